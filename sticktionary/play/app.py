"""`sticktionary play`: the game in a browser, offline, in one process.

As the Telegram demo does: a fresh database with the demo pack, the local Bot API sandbox, an English
bot on python-telegram-bot and a Chinese bot on aiogram (through bots.run.run_bots). Simulated
players keep playing in the background at a person's pace, so what the human labels gets retrieved
and the human gets other players' queries to retrieve. The sandbox's server also serves the chat
page and the dashboard; a research export is made now and then for the dashboard's metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import threading
import time
import webbrowser
from collections.abc import Callable
from pathlib import Path

import psutil

from core.vocabulary import LANGUAGES
from sticktionary.play.web import BotEntry, Dashboard, GroupEntry, Identity, add_routes

log = logging.getLogger(__name__)

TOKENS = {"en": "1001:play-en", "zh": "1002:play-zh"}
USERNAMES = {"en": "sticktionary_en_bot", "zh": "sticktionary_zh_bot"}
# The people one person can be in the page: two players (to see both sides of a round) and a moderator.
IDENTITIES = [Identity("Alex", {"en": 101, "zh": 201}), Identity("Sam", {"en": 102, "zh": 202}),
              Identity("Moderator", {"en": 9_001, "zh": 9_002}, moderator=True)]
MODERATOR_COMMANDS = [("review", "Review missed rounds"), ("review stats", "Review counts"),
                      ("prizes", "Prizes to hand out")]
# A group chat with the English bot and every identity in it: a group round raced from each side.
GROUPS = [GroupEntry(-100_1001, "Sticker friends", TOKENS["en"], [i.name for i in IDENTITIES],
                     [("round", "Post a round to race on"), ("top", "This group's leaderboard")])]
STORAGE_CHAT = -1_000_000_777  # where the bots upload the stickers for inline mode (STICKTIONARY_FILE_CHAT)


def seconds_since_process_start() -> float:
    return time.time() - psutil.Process().create_time()


async def _background_player(auto, stop: asyncio.Event, idle_pause: float) -> None:
    """One simulated player: joins, then plays screen after screen until `stop`."""
    joined = False
    while not stop.is_set():
        try:
            if not joined:
                await auto.join()
                joined = True
            if await auto.step() == "idle":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), idle_pause * auto.rng.uniform(0.5, 1.5))
        except Exception as error:  # noqa: BLE001 - a background player never stops the game
            # Mostly a screen that changed under the player (a button gone, a bot reply late): look again.
            log.debug("background player %s: %r", auto.player.name, error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


def _import_frameworks() -> None:
    import bots.transport.aiogram_shell  # noqa: F401
    import bots.transport.ptb_shell  # noqa: F401


def _export_now(db, settings) -> None:
    from core.exports import run_export
    from storage.export_files import apply_retention

    try:
        summary = run_export(db, settings)
        apply_retention(settings.exports.export_dir, 3)  # one every few minutes: keep the last few
        log.info("export %s: %d queries", summary.version, summary.queries)
    except Exception:  # noqa: BLE001 - the dashboard goes on without fresh metrics
        log.exception("the dashboard's export failed")


async def _exports(db, settings, stop: asyncio.Event, every: float, first_after: float = 10.0) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), first_after)  # the player's first screens come first
    while not stop.is_set():
        await _in_daemon_thread(_export_now, db, settings)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def _in_daemon_thread(function, *args) -> None:
    """Run `function` in a thread that Ctrl-C does not wait for (asyncio.to_thread's would be
    joined at exit: an export under way would hold the stop up for seconds). An export cut short
    leaves only a partial folder, which exports are built to survive."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def run() -> None:
        try:
            function(*args)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

    threading.Thread(target=run, name="play-export", daemon=True).start()
    await done


async def _upload_stickers(sandbox, shells, stop: asyncio.Event) -> None:
    """Inline mode offers stickers by file id: each bot uploads the pack to the storage chat at once
    (a live deployment paces this at 20 a minute; the sandbox's storage chat has no limit of its own here)."""
    from dataclasses import replace

    from bots.delivery.uploads import StickerUploads
    from bots.transport import SendPolicy
    from bots.transport.pacing import LocalPacer
    from offline.sandbox.server import Bucket

    for shell in shells:
        runtime = shell.runtime
        sandbox.chats[(TOKENS[runtime.languages[0]], STORAGE_CHAT)].bucket = Bucket(10_000, 10_000)
        # Ten a second: a third of the bot's overall limit, the rest left to the game's replies.
        quick = replace(runtime.delivery, policy=SendPolicy(runtime.bot_key, LocalPacer(
            overall_per_second=10, per_group=(10, 1.0))))
        uploads = StickerUploads(quick, STORAGE_CHAT, runtime.languages)
        while not stop.is_set() and await uploads.upload_batch(limit=50):
            pass


async def play(workdir: Path, *, port: int = 8080, host: str = "127.0.0.1", players: int = 3, think: float = 3.0,
               seed: int | None = None, export_every: float = 300.0, open_browser: bool = True,
               stop: asyncio.Event | None = None, echo: Callable[[str], None] = print) -> None:
    """Run until `stop` is set (default: Ctrl-C or SIGTERM)."""
    import httpx

    from bots.run import run_bots, stop_on_signals
    from core import metrics
    from core.health import Health, database_check, flag_check
    from core.pseudonyms import work_folder_key
    from offline.demo import _prepare
    from offline.oracle import database_oracle
    from offline.sandbox import Sandbox
    from offline.sandbox.players import AutoPlayer, SandboxPlayer
    from offline.simulation import demo_vocabulary
    from storage.settings import BotConfig, Settings

    stop = stop or stop_on_signals()
    workdir = Path(workdir)
    _check_port(host, port)  # before minutes of work are thrown away, not after
    # The bots' frameworks take seconds to import (aiogram builds hundreds of pydantic models):
    # that happens while the database is made.
    (db, database), _ = await asyncio.gather(asyncio.to_thread(_prepare, workdir, echo),
                                             asyncio.to_thread(_import_frameworks))
    settings = Settings(storage={"database_url": f"sqlite:///{database}", "sticker_root": workdir},
                        telegram={"media_cache": workdir / "media-cache",
                                  "moderators": [u for i in IDENTITIES if i.moderator for u in i.user_ids.values()]},
                        exports={"export_dir": workdir / "exports"}, privacy={"pseudonym_key": work_folder_key(workdir)},
                        rules={"session_min_tasks": 5, "partner_after": 5, "partner_poll_seconds": 1}, _env_file=None)
    entries = [BotEntry("en", TOKENS["en"], USERNAMES["en"], "Sticktionary (English)", "python-telegram-bot"),
               BotEntry("zh", TOKENS["zh"], USERNAMES["zh"], "Sticktionary（中文）", "aiogram")]
    sandbox = Sandbox(rate_limits=True, seed=seed or 0)
    for entry in entries:
        sandbox.add_bot(entry.token, entry.username)
    add_routes(sandbox.app, bots=entries, identities=IDENTITIES, board=Dashboard(db, settings),
               moderator_commands=MODERATOR_COMMANDS, groups=GROUPS)
    ready: dict[str, object] = {}
    health = Health("play", {"database": database_check(db), "bots": flag_check(lambda: bool(ready), "the bots "
                                                                               "have not started yet")},
                    extra=metrics.DatabaseState(db, LANGUAGES).families)
    health.add_routes(sandbox.app)  # /healthz, /readyz, /metrics beside the page
    try:
        base = await sandbox.start(host, port)
    except OSError as error:
        raise PortInUse(f"cannot listen on {host}:{port} ({error.strerror}): choose another port with --port") \
            from None
    settings = settings.replace(telegram={"telegram_api": base, "bots": [
        BotConfig(token=TOKENS["en"], framework="ptb", languages=["en"], name="en"),
        BotConfig(token=TOKENS["zh"], framework="aiogram", languages=["zh"], name="zh")]})
    for entry in entries:
        await sandbox.sim_group({"token": entry.token, "chat_id": STORAGE_CHAT, "title": "Sticker storage"})
    shells: list = []

    def on_ready(started) -> None:
        shells.extend(started)
        ready.update({lang: shell.runtime.wait_finished for lang, shell in zip(LANGUAGES, started, strict=True)})

    bots = asyncio.create_task(run_bots(settings, stop, health=health, on_ready=on_ready))
    background: list[asyncio.Task] = []
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            while not ready:
                if bots.done():
                    bots.result()  # the bots failed to start: say why
                    return  # stopped before they were up
                await asyncio.sleep(0.02)
            for group in GROUPS:  # the bot is added to the group (as Telegram tells it: my_chat_member)
                await client.post("/sim/group", json={"token": group.token, "chat_id": group.chat_id,
                                                      "title": group.title, "added_by": IDENTITIES[0].user_ids["en"],
                                                      "first_name": IDENTITIES[0].name})
            url = f"{base}/"
            echo(f"ready in {seconds_since_process_start():.1f} s: open {url} (dashboard: {base}/dashboard)")
            echo("play as Alex or Sam, in English or Chinese; the Moderator reviews misses with /review. "
                 "Ctrl-C stops.")
            if open_browser:
                threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
            rng = random.Random(seed)
            oracle, vocabulary = database_oracle(db), demo_vocabulary()
            for language, first in (("en", 1_000), ("zh", 2_000)):
                for n in range(players):
                    player = SandboxPlayer(client, TOKENS[language], first + n, f"{language}-player-{n + 1}", language,
                                           wait_finished=ready[language])
                    auto = AutoPlayer(player, language, oracle, vocabulary, random.Random(rng.random()),
                                      skill=rng.uniform(0.55, 0.9), think=think)
                    background.append(asyncio.create_task(_background_player(auto, stop, idle_pause=think * 4)))
            background.append(asyncio.create_task(_exports(db, settings, stop, export_every)))
            background.append(asyncio.create_task(_upload_stickers(sandbox, shells, stop)))
            await stop.wait()
    finally:
        stop.set()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        while not bots.done():  # the bots stop one after the other, each ending its long poll
            sandbox.release_long_polls()
            await asyncio.wait([bots], timeout=0.1)
        await bots
        await sandbox.stop()
        await health.close()
        db.dispose()
        echo("stopped")


class PortInUse(OSError):
    pass


def _check_port(host: str, port: int) -> None:
    if port == 0:
        return
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
        try:
            probe.bind((host, port))
        except OSError as error:
            raise PortInUse(f"cannot listen on {host}:{port} ({error.strerror}): choose another port with --port") \
                from None


def run_play(workdir: Path, **options) -> None:
    asyncio.run(play(Path(workdir), **options))
