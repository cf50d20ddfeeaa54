"""`sticktionary demo`: the whole game offline, through the engine, in well under a minute."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

from tqdm import tqdm

from core.datasets import export_sticker_queries, import_sticker_queries
from core.engine import Game
from core.importing import import_usticker
from sticktionary.demo_pack import PACK_DIR
from sticktionary.simulation import Simulation, demo_vocabulary
from storage.db import make_engine
from storage.migrate import upgrade
from storage.settings import Settings


def run_demo(workdir: Path, *, players_per_language: int = 6, turns: int = 30, seed: int = 1,
             echo=print) -> dict:
    started = time.perf_counter()
    workdir = Path(workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    database = workdir / "demo.sqlite3"
    db = make_engine(f"sqlite:///{database}")
    upgrade(db)
    echo(f"database: {database}")

    shutil.copytree(PACK_DIR / "stickers", workdir / "stickers")
    report = import_usticker(db, PACK_DIR, sticker_root=workdir, approve=True, progress=False)
    echo(f"imported demo pack: {report.stickers_added} stickers, {report.contexts_added} chat contexts "
         f"({dict(report.languages)})")
    for language in ("en", "zh"):
        seeded = import_sticker_queries(db, PACK_DIR / f"seed_queries_{language}.csv", language)
        echo(f"seed queries {language}: {seeded['queries_added']}")

    settings = Settings(database_url=f"sqlite:///{database}", sticker_root=workdir, gold_rate=0.2,
                        session_min_tasks=10, _env_file=None)
    game = Game(db, settings, rng=random.Random(seed))
    simulation = Simulation(game, demo_vocabulary(), seed=seed)
    simulation.add_players("en", players_per_language, 1_000)
    simulation.add_players("zh", players_per_language, 2_000)
    moderator = game.register_player(9_999, "moderator", "en")
    game.set_moderator(moderator.id)

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

    summary = {"roles": roles, "review": dict(decisions), "exports": {}, "leaderboards": {}}
    for language in ("en", "zh"):
        board = game.leaderboard(language, limit=5)
        summary["leaderboards"][language] = [(row.display_name, row.points) for row in board]
        echo(f"\nleaderboard ({language}):")
        for row in board:
            echo(f"  {row.rank}. {row.display_name:<14} {row.points:>4} points")
        out = workdir / "export" / f"sticker_queries_{language}_release.csv"
        rows = export_sticker_queries(db, language, out)
        summary["exports"][language] = {"path": str(out), "stickers": rows}
        echo(f"  StickerQueries export: {rows} stickers -> {out}")
    qualifying = game.qualifying_sessions()
    echo(f"\nsessions qualifying for the participation reward (>= {settings.session_min_tasks} tasks): "
         f"{len(qualifying)}")
    summary["seconds"] = round(time.perf_counter() - started, 1)
    echo(f"done in {summary['seconds']} s")
    db.dispose()
    return summary
