"""`sticktionary demo`: the whole game offline, through the engine, in well under a minute."""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from tqdm import tqdm

from core.game import Game
from core.game.prizes import period_start
from core.vocabulary import LANGUAGES
from offline.demo_pack import PACK_DIR, load_demo_pack
from offline.simulation import Simulation, demo_vocabulary
from storage.db import make_engine
from storage.migrate import upgrade
from storage.settings import Settings


def _prepare(workdir: Path, echo):
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    database = workdir / "demo.sqlite3"
    db = make_engine(f"sqlite:///{database}")
    upgrade(db)
    echo(f"database: {database}")
    shutil.copytree(PACK_DIR / "stickers", workdir / "stickers")
    report, seeds = load_demo_pack(db, sticker_root=workdir)
    echo(f"imported demo pack: {report.stickers_added} stickers, {report.contexts_added} chat contexts "
         f"({dict(report.languages)})")
    for language, added in seeds.items():
        echo(f"seed queries {language}: {added}")
    return db, database


def _finish(db, game, workdir: Path, settings, summary: dict, started: float, echo) -> dict:
    from core.exports import run_export  # pyarrow: not needed by `sticktionary play` to start
    from core.pseudonyms import work_folder_key

    summary.setdefault("exports", {})
    summary.setdefault("leaderboards", {})
    for language in LANGUAGES:
        board = game.standings.leaderboard(language, limit=5)
        summary["leaderboards"][language] = [(row.nickname, row.points) for row in board]
        echo(f"\nleaderboard ({language}):")
        for row in board:
            echo(f"  {row.rank}. {row.nickname:<14} {row.points:>4} points")
    now = game.clock()
    prizes = game.prizes.tally(period_start("day", now, ZoneInfo(settings.jobs.jobs_timezone)), now, "day")
    echo("\nprizes so far today: " + ", ".join(f"{language}: {c['top']} top, {c['participation']} participation"
                                             for language, c in prizes.items()))
    # The demo has no operator secret: a random key of its own, kept in its folder; no semantic
    # figures, which would load a large model.
    key = work_folder_key(workdir)
    export = run_export(db, settings.replace(exports={"export_dir": workdir / "exports", "export_semantic": False},
                                                privacy={"pseudonym_key": key}),
                        now=now)
    echo(f"\nresearch export {export.version}: {export.queries} queries -> {export.folder}")
    for language in LANGUAGES:
        table, recall = export.stats[language]["queries"], export.metrics[language]["bm25_retrieval"]
        out = export.folder / f"sticker_queries_{language}_release.csv"
        summary["exports"][language] = {"path": str(out), "stickers": table["stickers"]}
        echo(f"  {language}: {table['stickers']} stickers, {table['queries']} queries, "
             f"BM25 Recall@10 {recall['recall@10']} -> {out.name}")
    summary["seconds"] = round(time.perf_counter() - started, 1)
    echo(f"done in {summary['seconds']} s")
    echo("\nnow play it yourself, in the browser: sticktionary play  (README: \"Play it yourself\"; "
         "you label and retrieve, switch player and language, and review as the moderator)")
    db.dispose()
    return summary


async def _telegram_demo(workdir: Path, players_per_language: int, turns: int, seed: int, echo, protect) -> dict:
    """The demo through Telegram's protocol: the sandbox, an English bot on python-telegram-bot and a
    Chinese bot on aiogram in one process, simulated players and a moderator pressing buttons."""
    import httpx

    from bots.run import run_bots
    from offline.oracle import database_oracle
    from offline.sandbox import Sandbox
    from offline.sandbox.players import AutoPlayer, SandboxPlayer
    from storage.settings import BotConfig

    started = time.perf_counter()
    db, database = _prepare(workdir, echo)
    sandbox = Sandbox(rate_limits=True, seed=seed)
    tokens = {"en": "1001:demo-en", "zh": "1002:demo-zh"}
    protect(tokens.values())  # the HTTP clients' loggers quiet, and the tokens masked in any log line
    sandbox.add_bot(tokens["en"], "sticktionary_en_bot")
    sandbox.add_bot(tokens["zh"], "sticktionary_zh_bot")
    base = await sandbox.start()
    moderator_id = 9_999
    settings = Settings(storage={"database_url": f"sqlite:///{database}", "sticker_root": workdir},
                        rules={"gold_rate": 0.2, "session_min_tasks": max(1, turns),
                               "partner_after": 5, "partner_poll_seconds": 1},  # partners answer within seconds here
                        telegram={"telegram_api": base, "media_cache": workdir / "media-cache",
                                  "moderators": [moderator_id], "bots": [
                            BotConfig(token=tokens["en"], framework="ptb", languages=["en"], name="en"),
                            BotConfig(token=tokens["zh"], framework="aiogram", languages=["zh"], name="zh")]},
                        _env_file=None)
    echo(f"sandbox Bot API at {base}: English bot on python-telegram-bot, Chinese bot on aiogram")
    stop = asyncio.Event()
    ready: dict[str, object] = {}
    bots = asyncio.create_task(run_bots(settings, stop, on_ready=lambda shells: ready.update(
        {lang: shell.runtime.wait_finished for lang, shell in zip(LANGUAGES, shells, strict=True)})))
    roles = {"labeler": 0, "retriever": 0, "idle": 0}
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            while not ready:
                if bots.done():
                    bots.result()  # the bots failed to start: say why
                await asyncio.sleep(0.05)
            oracle = database_oracle(db)
            vocabulary = demo_vocabulary()
            rng = random.Random(seed)
            autos = [AutoPlayer(SandboxPlayer(client, tokens[lang], user, f"{lang}-player-{n + 1}", lang,
                                              wait_finished=ready[lang]), lang,
                                oracle, vocabulary, random.Random(rng.random()), skill=rng.uniform(0.6, 0.95))
                     for lang, first in (("en", 1_000), ("zh", 2_000))
                     for n, user in enumerate(range(first, first + players_per_language))]
            await asyncio.gather(*(a.join() for a in autos))
            with tqdm(total=turns * len(autos), desc="playing in Telegram", unit=" task") as bar:
                async def play(auto):
                    for _ in range(turns):
                        roles[await auto.step()] += 1
                        bar.update()
                # The moderator joins while the players play (each chat has its own pace).
                moderator, *_ = await asyncio.gather(
                    _moderator_joins(client, tokens["en"], moderator_id, ready["en"]), *(play(a) for a in autos))
            reviewed = await _moderate(moderator)
        echo(f"played: {roles['labeler']} labeler rounds, {roles['retriever']} retrieval tasks; "
             f"moderator decisions through /review: {reviewed}")
        stats = dict(sandbox.stats)
        echo(f"Bot API calls: {sum(v for k, v in stats.items() if k.startswith('ok:'))}, "
             f"rate-limited: {stats.get('rate_limited', 0)}")
    finally:
        stop.set()
        await bots
        await sandbox.stop()
    game = Game.open(db, settings)
    return _finish(db, game, workdir, settings, {"roles": roles, "reviewed": reviewed}, started, echo)


async def _moderator_joins(client, token: str, moderator_id: int, wait_finished):
    from offline.sandbox.players import SandboxPlayer

    moderator = SandboxPlayer(client, token, moderator_id, "moderator", "en", wait_finished=wait_finished)
    await moderator.send("/start")
    await moderator.press("lang:en")
    await moderator.press("consent")
    return moderator


async def _moderate(moderator) -> int:
    """A moderator who opens /review and accepts every item shown, through the buttons."""
    decisions = 0
    replies = await moderator.send("/review")
    while True:
        accept = next((b for e in replies for b in moderator.buttons(e) if b.startswith("ra:")), None)
        if accept is None:
            return decisions
        replies = await moderator.press(accept)
        decisions += 1


def run_telegram_demo(workdir: Path, *, players_per_language: int = 4, turns: int = 4, seed: int = 1,
                      echo=print, protect=lambda secrets: None) -> dict:
    """`protect(secrets)`: the caller's log redaction, told the demo's bot tokens (sticktionary.logs)."""
    return asyncio.run(_telegram_demo(Path(workdir), players_per_language, turns, seed, echo, protect))


def run_demo(workdir: Path, *, players_per_language: int = 6, turns: int = 30, seed: int = 1,
             echo=print) -> dict:
    """The engine-only demo: simulated players call the game engine directly."""
    started = time.perf_counter()
    workdir = Path(workdir)
    db, database = _prepare(workdir, echo)

    settings = Settings(storage={"database_url": f"sqlite:///{database}", "sticker_root": workdir},
                        rules={"gold_rate": 0.2, "session_min_tasks": 10}, _env_file=None)
    game = Game.open(db, settings, rng=random.Random(seed))
    simulation = Simulation(game, demo_vocabulary(), seed=seed)
    simulation.add_players("en", players_per_language, 1_000)
    simulation.add_players("zh", players_per_language, 2_000)
    moderator = game.players.register(9_999, "moderator", "en")
    game.players.set_moderator(moderator.id)

    roles = {"labeler": 0, "retriever": 0}
    with tqdm(total=turns * len(simulation.players), desc="playing", unit=" task") as bar:
        for _turn in range(turns):
            for player in simulation.players:
                role = simulation.play_turn(player)
                if role:
                    roles[role] += 1
                bar.update()
    decisions = simulation.moderate(moderator.id)
    echo(f"played: {roles['labeler']} labeler rounds, {roles['retriever']} retrieval tasks; "
         f"review: {dict(decisions)}")

    return _finish(db, game, workdir, settings, {"roles": roles, "review": dict(decisions)}, started, echo)
