"""`sticktionary bench bots`: interactions through the sandbox, against a bare echo bot on the
same framework and sandbox, measured in the same run. The sandbox's rate limits and the bots'
pacing are off: this measures the bot, not Telegram's cap.

Processes as in real life: the sandbox (Telegram), `workers` game bot processes
(offline.bench.worker, each the game shell in webhook mode on its own port, the sandbox
spreading deliveries over them round-robin; chat order through Redis when there are several), the
echo bot in a process of its own (polling), and the simulated players (offline.bench.players).
One worker is measured the same way as several (a webhook worker process, not today's in-process
polling), so 1 and N compare like with like. The game players and the echo players play in the
same time window, so interactions_per_s and echo_interactions_per_s share the machine alike;
capacity_ratio is their quotient (meaningful at --think-ms 0, where it is not the think time)."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from offline.bench.suite import _percentile
from offline.databases import throwaway_postgres_database
from offline.demo_pack import load_demo_pack
from storage.db import make_engine
from storage.migrate import upgrade

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_sandbox_process(spread: list[str]) -> tuple[subprocess.Popen, str]:
    """The sandbox in its own process, as Telegram is in its own place: the bot processes are
    measured alone, not the fake Telegram they talk to."""
    process = subprocess.Popen([sys.executable, "-m", "offline.sandbox", "--no-limits", "--spread", ",".join(spread),
                                "--bot", f"{GAME_TOKEN}=bench_game_bot", "--bot", f"{ECHO_TOKEN}=bench_echo_bot"],
                               stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline().strip()
    if not line.startswith("ready "):
        process.kill()
        raise RuntimeError(f"the sandbox did not start: {line!r}")
    return process, line.split(" ", 1)[1]


def _start_bot_process(spec: dict) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "offline.bench.worker", json.dumps(spec)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline().strip()
    if not line.startswith("ready "):
        process.kill()
        raise RuntimeError(f"a bot process ({spec['role']}) did not start: {line!r}")
    return process, line.split(" ", 1)[1]


def _stop(process: subprocess.Popen) -> None:
    try:
        process.stdin.close()  # the bot process stops cleanly when its stdin closes
        process.wait(30)
    except (subprocess.TimeoutExpired, OSError):
        process.kill()
        process.wait(10)


def _measure(framework: str, players: int, steps: int, database_url: str, workdir: Path, think: float,
             workers: int, redis_url: str | None) -> dict:
    db = make_engine(database_url)
    upgrade(db)
    load_demo_pack(db)
    db.dispose()
    ports = [_free_port() for _ in range(workers)]
    sandbox, base = _start_sandbox_process([f"http://127.0.0.1:{port}" for port in ports])
    started: list[subprocess.Popen] = []
    try:
        secret = secrets.token_hex(16)
        common = {"framework": framework, "sandbox": base, "game_token": GAME_TOKEN, "database_url": database_url,
                  "workdir": str(workdir), "secret": secret, "redis_url": redis_url if workers > 1 else None}
        worker_bases = []
        for index, port in enumerate(ports):
            process, worker_base = _start_bot_process({**common, "role": "game", "index": index, "port": port})
            started.append(process)
            worker_bases.append(worker_base)
        process, _ = _start_bot_process({**common, "role": "echo"})
        started.append(process)
        httpx.post(f"{base}/bot{GAME_TOKEN}/setWebhook", timeout=10, json={
            "url": f"http://127.0.0.1:{ports[0]}/telegram/game", "secret_token": secret}).raise_for_status()
        spec = {"sandbox": base, "game_token": GAME_TOKEN, "echo_token": ECHO_TOKEN,
                "finished": [f"{b}/finished" for b in worker_bases], "database_url": database_url,
                "players": players, "steps": steps, "think": think}
        players_process = subprocess.run([sys.executable, "-m", "offline.bench.players", json.dumps(spec)],
                                         stdout=subprocess.PIPE, text=True)
        if players_process.returncode != 0:
            raise RuntimeError(f"the simulated players failed (exit code {players_process.returncode})")
        measured = json.loads(players_process.stdout.strip().splitlines()[-1])
    finally:
        for process in started:
            _stop(process)
        sandbox.terminate()
        sandbox.wait(10)
    milliseconds = [x * 1000 for x in measured["game"]]
    echo_milliseconds = [x * 1000 for x in measured["echo"]]
    rate = len(milliseconds) / measured["game_seconds"]
    echo_rate = len(echo_milliseconds) / measured["echo_seconds"]
    return {
        "framework": framework, "players": players, "workers": workers, "interactions": len(milliseconds),
        "interactions_per_s": round(rate, 1),
        "p50_ms": round(_percentile(milliseconds, 50), 1), "p99_ms": round(_percentile(milliseconds, 99), 1),
        "echo_interactions_per_s": round(echo_rate, 1),
        "echo_p50_ms": round(_percentile(echo_milliseconds, 50), 1), "think_ms": round(think * 1000),
        "capacity_ratio": round(rate / echo_rate, 3), "interleaved": True,
    }


def bench_bots(framework: str = "ptb", players: int = 50, steps: int = 20, postgres_url: str | None = None,
               think_ms: int = 1000, workers: int = 1, redis_url: str = "redis://127.0.0.1:6379/9") -> dict:
    """Players pause `think_ms` on average before each action, as people do (0: back to back,
    which measures saturation: latency then is mostly queueing, for the echo bot too).
    `workers` > 1 needs Redis (`redis_url`, a database the run flushes first) for the chat locks."""
    if workers < 1:
        raise ValueError("at least one worker")
    if workers > 1:
        import redis

        client = redis.Redis.from_url(redis_url)
        try:
            client.flushdb()
        finally:
            client.close()
    think = think_ms / 1000
    workdir = Path(tempfile.mkdtemp(prefix="sticktionary-bench-"))
    try:
        if postgres_url:
            with throwaway_postgres_database(postgres_url, "sticktionary_bots") as url:
                result = _measure(framework, players, steps, url, workdir, think, workers, redis_url)
                result["database"] = "postgresql"
        else:
            result = _measure(framework, players, steps, f"sqlite:///{workdir}/bench.sqlite3", workdir, think,
                              workers, redis_url)
            result["database"] = "sqlite"
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
