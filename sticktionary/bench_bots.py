"""`sticktionary bench bots`: interactions through the sandbox, against a bare echo bot on the
same framework and sandbox, measured in the same run. The sandbox's rate limits and the bots'
pacing are off: this measures the bot, not Telegram's cap.

Three processes, as in real life: the sandbox (Telegram), this one (the bots, and nothing else),
and the simulated players (sticktionary.bench_players)."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from aiohttp import web

from bots.app import game_executor, make_shell, settled_heap
from bots.conversation import Conversation
from bots.media import Media
from core.engine import Game
from sticktionary.bench import _percentile
from sticktionary.demo_pack import PACK_DIR, load_demo_pack
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


async def _finished_endpoint(runtime) -> tuple[web.AppRunner, str]:
    """GET /finished?update_id=N: answers once the bot has delivered its last reply to update N
    (504 past `timeout`). It lets the players' process time interactions exactly."""
    async def finished(request: web.Request) -> web.Response:
        try:
            await runtime.wait_finished(int(request.query["update_id"]), float(request.query.get("timeout", 30)))
        except TimeoutError:
            return web.Response(status=504)
        return web.Response(text="ok")

    application = web.Application()
    application.router.add_get("/finished", finished)
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/finished"


async def _measure(framework: str, players: int, steps: int, database_url: str, workdir: Path, base: str,
                   think: float) -> dict:
    db = make_engine(database_url)
    upgrade(db)
    load_demo_pack(db)
    settings = Settings(database_url=database_url, gold_rate=0.15, _env_file=None)
    game = Game(db, settings, rng=random.Random(1))
    executor = game_executor(settings.game_threads)
    shell = make_shell(framework, GAME_TOKEN, base, game, Conversation(game), Media(PACK_DIR, workdir / "media"),
                       pacing=False, game_executor=executor)
    echo = _echo_shell(framework, base)
    await shell.start(poll_timeout=1)
    await echo.start()
    endpoint, finished_url = await _finished_endpoint(shell.runtime)
    spec = {"sandbox": base, "game_token": GAME_TOKEN, "echo_token": ECHO_TOKEN, "finished": finished_url,
            "database_url": database_url, "players": players, "steps": steps, "think": think}
    try:
        with settled_heap():  # as `sticktionary run` does once its bots are up
            process = await asyncio.create_subprocess_exec(sys.executable, "-m", "sticktionary.bench_players",
                                                           json.dumps(spec), stdout=asyncio.subprocess.PIPE)
            output, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"the simulated players failed (exit code {process.returncode})")
        measured = json.loads(output.decode().strip().splitlines()[-1])
    finally:
        await endpoint.cleanup()
        await echo.stop()
        await shell.stop()
        executor.shutdown(wait=True)
        db.dispose()
    milliseconds = [x * 1000 for x in measured["game"]]
    echo_milliseconds = [x * 1000 for x in measured["echo"]]
    return {
        "framework": framework, "players": players, "interactions": len(milliseconds),
        "interactions_per_s": round(len(milliseconds) / measured["game_seconds"], 1),
        "p50_ms": round(_percentile(milliseconds, 50), 1), "p99_ms": round(_percentile(milliseconds, 99), 1),
        "echo_interactions_per_s": round(len(echo_milliseconds) / measured["echo_seconds"], 1),
        "echo_p50_ms": round(_percentile(echo_milliseconds, 50), 1), "think_ms": round(think * 1000),
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



