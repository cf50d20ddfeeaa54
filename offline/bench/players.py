"""The simulated players of `sticktionary bench bots`, in a process of their own: they share
neither the bot's interpreter lock nor its event loop, as real players would not.

`python -m offline.bench.players SPEC` takes a JSON spec (sandbox base, tokens, database URL,
players) and then reads one run a line on stdin until stdin closes:

    {"mode": "both" | "game" | "echo", "steps": N, "think": S, "echo_think": S,
     "interval": S, "echo_interval": S,   (optional: pace the players instead, see Pacer)
     "finished": [the game workers' /finished addresses],
     "pids": {"game": [...], "echo": [...], "sandbox": [...]}}

For each run it prints one JSON line: the latency of every game interaction and of every echo
interaction, how long each group took ("both" plays the two groups at once), the mean pause before
an action, the CPU seconds (user + system, psutil) that each group of processes spent in that run's
window (the game workers and the echo bot up to the end of their own group, the sandbox and this
process up to the end of the run), and how busy the whole machine was meanwhile, as a share of all
its cores, with the part that was not these processes (other users on a shared machine).

The game players join (/start, language, consent) and make one move each before their first
measured window; the same players play every run, so later runs find a warm bot.

An interaction is timed from just before the update goes into the sandbox until the bot host
says the bot has delivered its last reply to it.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

import httpx
import psutil

from core.vocabulary import LANGUAGES
from offline.oracle import database_oracle
from offline.sandbox.players import AutoPlayer, SandboxPlayer
from offline.simulation import demo_vocabulary
from storage.db import make_engine


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User + system CPU seconds of these processes so far, with what their finished children
    (media decoders) cost them."""
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system + times.children_user + times.children_system
    return total


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, every process of every user."""
    times = psutil.cpu_times()._asdict()
    for counted_in_user in ("guest", "guest_nice"):
        times.pop(counted_in_user, None)
    idle = times["idle"] + times.get("iowait", 0.0)
    total = sum(times.values())
    return total - idle, total


class Pacer:
    """A player's think time. Without an interval: a pause of `think` on average (0.5-1.5 times it)
    before each action. With `interval` (seconds): each action is due `interval` on average
    (0.5-1.5 times it) after the previous one began, the first within one interval of the start, so
    the pause is the interval less the time the action took (none if it took longer). `players`
    such players offer players / interval actions a second, whatever the latency, as long as the
    bot keeps up."""

    def __init__(self, rng: random.Random, think: float = 0.0, interval: float | None = None):
        self.rng, self.think, self.interval = rng, think, interval
        self.last: float | None = None
        self.paused = 0.0  # seconds paused so far

    async def pause(self) -> None:
        now = time.perf_counter()
        if self.interval:
            if self.last is None:
                wait = self.interval * self.rng.random()
            else:
                wait = max(0.0, self.last + self.interval * self.rng.uniform(0.5, 1.5) - now)
        else:
            wait = self.think * self.rng.uniform(0.5, 1.5) if self.think else 0.0
        if wait:
            await asyncio.sleep(wait)
        self.paused += wait
        self.last = time.perf_counter()


class PacedPlayer(AutoPlayer):
    """An AutoPlayer whose pauses come from a Pacer."""

    pacer: Pacer

    async def _pause(self) -> None:
        await self.pacer.pause()


class Players:
    def __init__(self, spec: dict):
        self.spec = spec
        self.db = make_engine(spec["database_url"])
        self.client = httpx.AsyncClient(base_url=spec["sandbox"], timeout=60,
                                        limits=httpx.Limits(max_connections=200))
        self.finished_urls: list[str] = []
        self.vocabulary = demo_vocabulary()
        self.autos: list[AutoPlayer] | None = None
        self.echo_seen = {20_000 + i: 0 for i in range(spec["players"])}  # transcript entries each echo player has
        self.echo_sent = 0

    async def close(self) -> None:
        await self.client.aclose()
        self.db.dispose()

    async def _ask(self, url: str, update_id: int, timeout: float) -> None:
        response = await self.client.get(url, params={"update_id": update_id, "timeout": timeout}, timeout=timeout + 5)
        response.raise_for_status()

    async def wait_finished(self, update_id: int, timeout: float = 30) -> None:
        """Every worker is asked at once (only the one that handled the update knows it); the first
        ok answer wins and the other questions are cancelled."""
        asking = [asyncio.create_task(self._ask(url, update_id, timeout)) for url in self.finished_urls]
        try:
            for done in asyncio.as_completed(asking):
                try:
                    await done
                    return
                except httpx.HTTPStatusError:
                    continue
            raise TimeoutError(f"no worker finished update {update_id}")
        finally:
            for task in asking:
                task.cancel()

    async def _join(self) -> None:
        oracle = database_oracle(self.db)
        languages = list(LANGUAGES)
        self.autos = [PacedPlayer(SandboxPlayer(self.client, self.spec["game_token"], 10_000 + i, f"bench{i}",
                                               languages[i % 2], wait_finished=self.wait_finished),
                                 languages[i % 2], oracle, self.vocabulary, random.Random(i))
                      for i in range(self.spec["players"])]
        for auto in self.autos:
            auto.player.eager = False  # read the screen when acting on it, not after every reply
            auto.pacer = Pacer(auto.rng)
        await asyncio.gather(*(a.join() for a in self.autos))
        # One unmeasured move each, so the bot's first-use work (lazy imports, first statements) is start-up too.
        await asyncio.gather(*(a.step() for a in self.autos))

    async def _play_game(self, auto: AutoPlayer, steps: int) -> None:
        while auto.interactions < steps:
            await auto.step()

    async def _echo_player(self, user_id: int, steps: int, pacer: Pacer) -> list[float]:
        timings = []
        for _ in range(steps):
            await pacer.pause()
            began = time.perf_counter()
            # The wait is asked for before the message goes in, so it costs no extra round trip.
            waiting = asyncio.create_task(self.client.post("/sim/wait", json={
                "token": self.spec["echo_token"], "user_id": user_id, "after": self.echo_seen[user_id] + 1,
                "timeout": 30}))
            await self.client.post("/sim/message", json={"token": self.spec["echo_token"], "user_id": user_id,
                                                          "text": f"hello {self.echo_seen[user_id]}"})
            (await waiting).raise_for_status()
            timings.append(time.perf_counter() - began)
            self.echo_seen[user_id] += 2
        return timings

    async def run(self, phase: dict) -> dict:
        mode, steps = phase["mode"], phase["steps"]
        self.finished_urls = phase["finished"]
        game_on, echo_on = mode in ("both", "game"), mode in ("both", "echo")
        if game_on and self.autos is None:
            await self._join()
        processes = {group: [psutil.Process(pid) for pid in phase["pids"].get(group, [])]
                     for group in ("game", "echo", "sandbox")}
        processes["players"] = [psutil.Process()]
        if game_on:
            for auto in self.autos:
                auto.latencies.clear()
                auto.interactions = 0
                auto.pacer = Pacer(auto.rng, phase["think"], phase.get("interval"))
        echo_pacers = {user_id: Pacer(random.Random(user_id * 1000 + self.echo_sent), phase["echo_think"],
                                      phase.get("echo_interval")) for user_id in self.echo_seen}
        cpu: dict[str, float] = {}
        seconds: dict[str, float] = {}

        async def group(name: str, coroutine) -> object:
            result = await coroutine
            seconds[name] = time.perf_counter() - began
            cpu[name] = cpu_seconds(processes[name]) - before[name]
            return result

        before = {name: cpu_seconds(group_processes) for name, group_processes in processes.items()}
        machine_before = machine_busy_seconds()
        began = time.perf_counter()
        groups = []
        if game_on:
            groups.append(group("game", asyncio.gather(*(self._play_game(a, steps) for a in self.autos))))
        if echo_on:
            groups.append(group("echo", asyncio.gather(*(self._echo_player(user_id, steps, pacer)
                                                         for user_id, pacer in echo_pacers.items()))))
        # In "both" the two groups play in the same time window, so they share the machine alike.
        results = await asyncio.gather(*groups)
        window = time.perf_counter() - began
        for name in ("sandbox", "players"):
            cpu[name] = cpu_seconds(processes[name]) - before[name]
        machine_after = machine_busy_seconds()
        machine_seconds = max(machine_after[1] - machine_before[1], 1e-9)
        self.echo_sent += 1
        echo = [x for timings in results[-1] for x in timings] if echo_on else []
        game = [x for a in self.autos for x in a.latencies] if game_on else []
        paused = {"game": sum(a.pacer.paused for a in self.autos) / max(len(game), 1) if game_on else None,
                  "echo": sum(p.paused for p in echo_pacers.values()) / max(len(echo), 1) if echo_on else None}
        return {"game": game, "echo": echo, "mean_pause": paused,
                "game_seconds": seconds.get("game"), "echo_seconds": seconds.get("echo"), "window_seconds": window,
                "cpu": cpu, "machine_busy": (machine_after[0] - machine_before[0]) / machine_seconds,
                "others_busy": max(0.0, machine_after[0] - machine_before[0] - sum(cpu.values())) / machine_seconds}


async def serve(spec: dict) -> None:
    players = Players(spec)
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            print(json.dumps(await players.run(json.loads(line))), flush=True)
    finally:
        await players.close()


def main() -> None:
    asyncio.run(serve(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
