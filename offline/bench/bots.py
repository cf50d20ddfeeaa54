"""`sticktionary bench bots`: interactions through the sandbox, against a bare echo bot on the
same framework and sandbox, measured in the same run. The sandbox's rate limits and the bots'
pacing are off: this measures the bot, not Telegram's cap.

Processes as in real life: the sandbox (Telegram), `workers` game bot processes
(offline.bench.worker, each the game shell in webhook mode on its own port, the sandbox
spreading deliveries over them round-robin; chat order through Redis when there are several), the
echo bot in a process of its own (polling), and the simulated players (offline.bench.players).
One worker is measured the same way as several (a webhook worker process, not today's in-process
polling), so 1 and N compare like with like.

Three runs, the same processes throughout:

1. Saturated (--think-ms 0): the game players and the echo players act back to back in the same
   time window, so interactions_per_s and echo_interactions_per_s share the machine alike (their
   quotient is throughput_ratio). Latency here is mostly queueing, for the echo bot too. Over this
   window (not start-up: the players have joined before it begins) the CPU time each process spent,
   user + system from psutil, divided by its interactions gives game_cpu_ms_per_interaction (all the
   game workers together) and echo_cpu_ms_per_interaction; harness_cpu_ms_per_interaction is the
   sandbox's and the players' over all interactions. capacity_ratio = echo CPU per interaction /
   game CPU per interaction: what share of the echo bot's interactions the game serves on the
   same CPU, whatever else the machine runs.
2. The game alone at half its capacity. capacity_per_s is what the CPU figures say this machine can
   serve: min(workers, cores) * 1000 / game ms (a worker is one interpreter: at most one core), and
   no more than cores * 1000 / (game ms + harness ms), as the sandbox and the players run here too.
   Each player's action is due every players / (capacity_per_s / 2) seconds on average (its think
   time is what the previous action left of that interval), which offers half the capacity;
   half_load_p50_ms and half_load_p99_ms are what a player feels on a machine that is not
   saturated. half_load_interactions_per_s and half_load_load (that over capacity_per_s) say what
   was achieved, half_load_machine_busy how busy the whole machine was (every process of every user,
   a share of all its cores) and half_load_others_busy how much of that was not the benchmark's
   processes (machine_busy and others_busy: the same for the saturated run).
3. The echo bot alone the same way (echo_capacity_per_s, echo_half_load_*)."""

from __future__ import annotations

import asyncio
import json
import os
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


def _cores() -> int:
    """The cores this process may run on (the benchmark's processes inherit them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _spawn(module: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)


def _ready(process: subprocess.Popen, what: str) -> str:
    """The rest of the process's "ready ..." line (the address it serves at, if any)."""
    line = process.stdout.readline().strip()
    if not line.startswith("ready"):
        process.kill()
        raise RuntimeError(f"{what} did not start: {line!r}")
    return line.removeprefix("ready").strip()


def _stop(process: subprocess.Popen) -> None:
    try:
        process.stdin.close()  # the bot and player processes stop cleanly when their stdin closes
        process.wait(30)
    except (subprocess.TimeoutExpired, OSError):
        process.kill()
        process.wait(10)


def _run_players(players: subprocess.Popen, phase: dict) -> dict:
    players.stdin.write(json.dumps(phase) + "\n")
    players.stdin.flush()
    line = players.stdout.readline()
    if not line:
        raise RuntimeError(f"the simulated players failed (exit code {players.wait(10)})")
    return json.loads(line)


def _ms(seconds: list[float]) -> list[float]:
    return [x * 1000 for x in seconds]


CPU_RESOLUTION_MS = 0.01  # the smallest CPU per interaction the capacity is computed with


def _per_interaction(cpu_seconds: float, interactions: int) -> float:
    return 1000 * cpu_seconds / max(interactions, 1)


def _capacity(bot_ms: float, harness_ms: float, processes: int, cores: int) -> float:
    """Interactions per second the machine can serve, by the CPU figures: each bot process is one
    interpreter, so at most one core's worth of work ("bot-bound"), and all of the cores also run
    the sandbox and the players for every interaction ("machine-bound"); the lower bound holds."""
    # Process CPU times tick in 10 ms steps: a tiny run can measure a bot at 0 ms, below resolution.
    bot_ms = max(bot_ms, CPU_RESOLUTION_MS)
    bot_bound = min(processes, cores) * 1000 / bot_ms
    machine_bound = cores * 1000 / (bot_ms + harness_ms)
    return min(bot_bound, machine_bound)


def _measure(framework: str, players: int, steps: int, database_url: str, workdir: Path, think: float,
             workers: int, redis_url: str | None, half_load: bool) -> dict:
    sandbox_port, ports = _free_port(), [_free_port() for _ in range(workers)]
    base = f"http://127.0.0.1:{sandbox_port}"
    started: list[subprocess.Popen] = []
    try:
        # The sandbox and the players start (imports, vocabulary) while the database is prepared.
        sandbox = _spawn("offline.sandbox", "--no-limits", "--port", str(sandbox_port),
                         "--spread", ",".join(f"http://127.0.0.1:{port}" for port in ports),
                         "--bot", f"{GAME_TOKEN}=bench_game_bot", "--bot", f"{ECHO_TOKEN}=bench_echo_bot")
        started.append(sandbox)
        player_process = _spawn("offline.bench.players", json.dumps({
            "sandbox": base, "game_token": GAME_TOKEN, "echo_token": ECHO_TOKEN, "database_url": database_url,
            "players": players}))
        started.append(player_process)
        db = make_engine(database_url)
        upgrade(db)
        load_demo_pack(db)
        db.dispose()
        if _ready(sandbox, "the sandbox") != base:
            raise RuntimeError("the sandbox serves at an address it was not asked for")
        secret = secrets.token_hex(16)
        common = {"framework": framework, "sandbox": base, "game_token": GAME_TOKEN, "database_url": database_url,
                  "workdir": str(workdir), "secret": secret, "redis_url": redis_url if workers > 1 else None}
        game_processes = [_spawn("offline.bench.worker", json.dumps({**common, "role": "game", "index": index,
                                                                          "port": port}))
                          for index, port in enumerate(ports)]
        started.extend(game_processes)
        echo_process = _spawn("offline.bench.worker", json.dumps({**common, "role": "echo"}))
        started.append(echo_process)
        worker_bases = [_ready(process, "a game bot process") for process in game_processes]
        _ready(echo_process, "the echo bot process")
        _ready(player_process, "the simulated players")
        httpx.post(f"{base}/bot{GAME_TOKEN}/setWebhook", timeout=10, json={
            "url": f"http://127.0.0.1:{ports[0]}/telegram/game", "secret_token": secret}).raise_for_status()
        pids = {"game": [p.pid for p in game_processes], "echo": [echo_process.pid], "sandbox": [sandbox.pid]}
        phase = {"steps": steps, "finished": [f"{b}/finished" for b in worker_bases], "pids": pids}

        saturated = _run_players(player_process, {**phase, "mode": "both", "think": think, "echo_think": think})
        cpu = saturated["cpu"]
        game_ms, echo_ms = _ms(saturated["game"]), _ms(saturated["echo"])
        game_cpu = _per_interaction(cpu["game"], len(game_ms))
        echo_cpu = _per_interaction(cpu["echo"], len(echo_ms))
        harness_cpu = _per_interaction(cpu["sandbox"] + cpu["players"], len(game_ms) + len(echo_ms))
        rate = len(game_ms) / saturated["game_seconds"]
        echo_rate = len(echo_ms) / saturated["echo_seconds"]
        cores = _cores()
        result = {
            "framework": framework, "players": players, "workers": workers, "interactions": len(game_ms),
            "interactions_per_s": round(rate, 1),
            "p50_ms": round(_percentile(game_ms, 50), 1), "p99_ms": round(_percentile(game_ms, 99), 1),
            "echo_interactions_per_s": round(echo_rate, 1),
            "echo_p50_ms": round(_percentile(echo_ms, 50), 1), "echo_p99_ms": round(_percentile(echo_ms, 99), 1),
            "think_ms": round(think * 1000), "interleaved": True,
            "throughput_ratio": round(rate / echo_rate, 3),
            "game_cpu_ms_per_interaction": round(game_cpu, 2), "echo_cpu_ms_per_interaction": round(echo_cpu, 2),
            "harness_cpu_ms_per_interaction": round(harness_cpu, 2),
            "capacity_ratio": round(echo_cpu / game_cpu, 3) if game_cpu else None,
            "cores": cores, "machine_busy": round(saturated["machine_busy"], 2),
            "others_busy": round(saturated["others_busy"], 2),
        }
        if not half_load:
            return result
        game_capacity = _capacity(game_cpu, harness_cpu, workers, cores)
        echo_capacity = _capacity(echo_cpu, harness_cpu, 1, cores)
        result |= {"capacity_per_s": round(game_capacity, 1), "echo_capacity_per_s": round(echo_capacity, 1)}
        # Each bot alone at half its capacity: what a player feels on a machine that is not saturated.
        # Each player's action is due every `interval` seconds on average (its think time is what is
        # left of the interval after the previous action), so players / interval = capacity / 2.
        for name, capacity in (("game", game_capacity), ("echo", echo_capacity)):
            interval = players / (capacity / 2)
            measured = _run_players(player_process, {**phase, "mode": name, "think": 0, "echo_think": 0,
                                                     "interval": interval, "echo_interval": interval})
            milliseconds = _ms(measured[name])
            achieved = len(milliseconds) / measured[f"{name}_seconds"]
            prefix = "half_load" if name == "game" else "echo_half_load"
            result |= {
                f"{prefix}_offered_per_s": round(capacity / 2, 1), f"{prefix}_interval_ms": round(interval * 1000),
                f"{prefix}_think_ms": round(measured["mean_pause"][name] * 1000),
                f"{prefix}_interactions_per_s": round(achieved, 1), f"{prefix}_load": round(achieved / capacity, 2),
                f"{prefix}_p50_ms": round(_percentile(milliseconds, 50), 1),
                f"{prefix}_p99_ms": round(_percentile(milliseconds, 99), 1),
                f"{prefix}_cpu_ms_per_interaction": round(_per_interaction(measured["cpu"][name],
                                                                           len(milliseconds)), 2),
                f"{prefix}_machine_busy": round(measured["machine_busy"], 2),
                f"{prefix}_others_busy": round(measured["others_busy"], 2),
            }
        return result
    finally:
        for process in reversed(started):
            if process is sandbox:
                process.terminate()
                process.wait(10)
            else:
                _stop(process)


def bench_bots(framework: str = "ptb", players: int = 50, steps: int = 20, postgres_url: str | None = None,
               think_ms: int = 0, workers: int = 1, redis_url: str = "redis://127.0.0.1:6379/9",
               half_load: bool = True) -> dict:
    """The saturated run first: players act back to back (`think_ms` 0; with a pause, about
    `think_ms` on average before each action, as people do, it is no longer saturated). Then, with
    `half_load`, the game alone and the echo alone at half the capacity that run's CPU figures give.
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
                result = _measure(framework, players, steps, url, workdir, think, workers, redis_url, half_load)
                result["database"] = "postgresql"
        else:
            result = _measure(framework, players, steps, f"sqlite:///{workdir}/bench.sqlite3", workdir, think,
                              workers, redis_url, half_load)
            result["database"] = "sqlite"
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
