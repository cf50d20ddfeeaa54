"""`sticktionary bench bots`: interactions through the sandbox, against a bare echo bot on the
same framework and sandbox, measured in the same run. The sandbox's rate limits and the bots'
pacing are off: this measures the bot, not Telegram's cap."""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bots.app import make_shell
from bots.conversation import Conversation
from bots.media import Media
from bots.oracle import database_oracle
from bots.sandbox.players import AutoPlayer, SandboxPlayer
from core.engine import Game
from sticktionary.bench import _percentile
from sticktionary.demo_pack import PACK_DIR, load_demo_pack
from sticktionary.simulation import demo_vocabulary
from storage.db import make_engine, throwaway_postgres_database
from storage.migrate import upgrade
from storage.settings import Settings

GAME_TOKEN = "1000:bench-game"
ECHO_TOKEN = "2000:bench-echo"


def _echo_shell(framework: str, api_base: str):
    if framework == "ptb":
        from telegram import Update
        from telegram.ext import ApplicationBuilder, MessageHandler, filters

        application = (ApplicationBuilder().token(ECHO_TOKEN).base_url(f"{api_base}/bot")
                       .concurrent_updates(True).build())

        async def echo(update: Update, _context) -> None:
            await update.message.reply_text(update.message.text or "?")

        application.add_handler(MessageHandler(filters.ALL, echo))

        class Shell:
            async def start(self):
                await application.initialize()
                await application.start()
                await application.updater.start_polling(poll_interval=0, timeout=1)

            async def stop(self):
                await application.updater.stop()
                await application.stop()
                await application.shutdown()

        return Shell()
    from aiogram import Bot, Dispatcher
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.types import Message

    bot = Bot(ECHO_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api_base)))
    dispatcher = Dispatcher()

    @dispatcher.message()
    async def echo(message: Message) -> None:
        await message.answer(message.text or "?")

    class AiogramEcho:
        async def start(self):
            self.task = asyncio.create_task(dispatcher.start_polling(bot, polling_timeout=1, handle_signals=False,
                                                                     close_bot_session=False))

        async def stop(self):
            await dispatcher.stop_polling()
            await asyncio.wait_for(self.task, 10)
            await bot.session.close()

    return AiogramEcho()


def _start_sandbox_process() -> tuple[subprocess.Popen, str]:
    """The sandbox in its own process, as Telegram is in its own place: the bot process is measured
    alone, not the fake Telegram it talks to."""
    process = subprocess.Popen([sys.executable, "-m", "bots.sandbox", "--no-limits",
                                "--bot", f"{GAME_TOKEN}=bench_game_bot", "--bot", f"{ECHO_TOKEN}=bench_echo_bot"],
                               stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline().strip()
    if not line.startswith("ready "):
        process.kill()
        raise RuntimeError(f"the sandbox did not start: {line!r}")
    return process, line.split(" ", 1)[1]


async def _measure(framework: str, players: int, steps: int, database_url: str, workdir: Path, base: str,
                   think: float) -> dict:
    db = make_engine(database_url)
    upgrade(db)
    load_demo_pack(db)
    game = Game(db, Settings(database_url=database_url, gold_rate=0.15, _env_file=None), rng=random.Random(1))
    shell = make_shell(framework, GAME_TOKEN, base, game, Conversation(game), Media(PACK_DIR, workdir / "media"),
                       pacing=False)
    echo = _echo_shell(framework, base)
    await shell.start(poll_timeout=1)
    await echo.start()
    client = httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=100))
    try:
        vocabulary = demo_vocabulary()
        oracle = database_oracle(db)
        languages = ["en", "zh"]
        autos = [AutoPlayer(SandboxPlayer(client, GAME_TOKEN, 10_000 + i, f"bench{i}", languages[i % 2],
                                          wait_finished=shell.runtime.wait_finished),
                            languages[i % 2], oracle, vocabulary, random.Random(i), think=think)
                 for i in range(players)]
        for auto in autos:
            auto.player.eager = False
        await asyncio.gather(*(a.join() for a in autos))
        for a in autos:
            a.latencies.clear()
            a.interactions = 0

        async def play(auto: AutoPlayer) -> None:
            while auto.interactions < steps:
                await auto.step()

        start = time.perf_counter()
        await asyncio.gather(*(play(a) for a in autos))
        game_seconds = time.perf_counter() - start
        latencies = [x for a in autos for x in a.latencies]

        async def echo_player(user_id: int) -> list[float]:
            timings, seen, rng = [], 0, random.Random(user_id)
            for n in range(steps):
                if think:
                    await asyncio.sleep(think * rng.uniform(0.5, 1.5))
                began = time.perf_counter()
                # The wait is asked for before the message goes in, so it costs no extra round trip.
                waiting = asyncio.create_task(client.post("/sim/wait", json={
                    "token": ECHO_TOKEN, "user_id": user_id, "after": seen + 1, "timeout": 30}))
                await client.post("/sim/message", json={"token": ECHO_TOKEN, "user_id": user_id,
                                                         "text": f"hello {n}"})
                (await waiting).raise_for_status()
                timings.append(time.perf_counter() - began)
                seen += 2
            return timings

        start = time.perf_counter()
        echo_latencies = [x for timings in await asyncio.gather(*(echo_player(20_000 + i) for i in range(players)))
                          for x in timings]
        echo_seconds = time.perf_counter() - start
    finally:
        await client.aclose()
        await echo.stop()
        await shell.stop()
        db.dispose()
    milliseconds = [x * 1000 for x in latencies]
    p50, p99 = _percentile(milliseconds, 50), _percentile(milliseconds, 99)
    echo_p50 = _percentile([x * 1000 for x in echo_latencies], 50)
    return {
        "framework": framework, "players": players, "interactions": len(latencies),
        "interactions_per_s": round(len(latencies) / game_seconds, 1), "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1), "echo_interactions_per_s": round(len(echo_latencies) / echo_seconds, 1),
        "echo_p50_ms": round(echo_p50, 1), "think_ms": round(think * 1000),
    }


def bench_bots(framework: str = "ptb", players: int = 50, steps: int = 20, postgres_url: str | None = None,
               think_ms: int = 1000) -> dict:
    """Players pause `think_ms` on average before each action, as people do (0: back to back,
    which measures saturation: latency then is mostly queueing, for the echo bot too)."""
    think = think_ms / 1000
    workdir = Path(tempfile.mkdtemp(prefix="sticktionary-bench-"))
    sandbox, base = _start_sandbox_process()
    try:
        if postgres_url:
            with throwaway_postgres_database(postgres_url, "sticktionary_bots") as url:
                result = asyncio.run(_measure(framework, players, steps, url, workdir, base, think))
                result["database"] = "postgresql"
        else:
            result = asyncio.run(_measure(framework, players, steps, f"sqlite:///{workdir}/bench.sqlite3", workdir,
                                          base, think))
            result["database"] = "sqlite"
        return result
    finally:
        sandbox.terminate()
        sandbox.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)



