"""The simulated players of `sticktionary bench bots`, in a process of their own: they share
neither the bot's interpreter lock nor its event loop, as real players would not.

`python -m offline.bench.players SPEC` takes a JSON spec (sandbox base, tokens, the bot
hosts' /finished addresses, database URL, players, steps, think) and prints one JSON line: the
latency of every game interaction and of every echo interaction, and how long each group took (both groups play at once).
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

from core.vocabulary import LANGUAGES
from offline.oracle import database_oracle
from offline.sandbox.players import AutoPlayer, SandboxPlayer
from offline.simulation import demo_vocabulary
from storage.db import make_engine


async def play(spec: dict) -> dict:
    players, steps, think = spec["players"], spec["steps"], spec["think"]
    db = make_engine(spec["database_url"])
    client = httpx.AsyncClient(base_url=spec["sandbox"], timeout=60, limits=httpx.Limits(max_connections=200))

    finished_urls = spec["finished"] if isinstance(spec["finished"], list) else [spec["finished"]]

    async def ask(url: str, update_id: int, timeout: float) -> None:
        response = await client.get(url, params={"update_id": update_id, "timeout": timeout}, timeout=timeout + 5)
        response.raise_for_status()

    async def wait_finished(update_id: int, timeout: float = 30) -> None:
        """Every worker is asked at once (only the one that handled the update knows it); the first
        ok answer wins and the other questions are cancelled."""
        asking = [asyncio.create_task(ask(url, update_id, timeout)) for url in finished_urls]
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

    try:
        vocabulary = demo_vocabulary()
        oracle = database_oracle(db)
        languages = list(LANGUAGES)
        autos = [AutoPlayer(SandboxPlayer(client, spec["game_token"], 10_000 + i, f"bench{i}", languages[i % 2],
                                          wait_finished=wait_finished),
                            languages[i % 2], oracle, vocabulary, random.Random(i), think=think)
                 for i in range(players)]
        for auto in autos:
            auto.player.eager = False  # read the screen when acting on it, not after every reply
        await asyncio.gather(*(a.join() for a in autos))
        for a in autos:
            a.latencies.clear()
            a.interactions = 0

        async def play_game(auto: AutoPlayer) -> None:
            while auto.interactions < steps:
                await auto.step()

        async def echo_player(user_id: int) -> list[float]:
            timings, seen, rng = [], 0, random.Random(user_id)
            for n in range(steps):
                if think:
                    await asyncio.sleep(think * rng.uniform(0.5, 1.5))
                began = time.perf_counter()
                # The wait is asked for before the message goes in, so it costs no extra round trip.
                waiting = asyncio.create_task(client.post("/sim/wait", json={
                    "token": spec["echo_token"], "user_id": user_id, "after": seen + 1, "timeout": 30}))
                await client.post("/sim/message", json={"token": spec["echo_token"], "user_id": user_id,
                                                         "text": f"hello {n}"})
                (await waiting).raise_for_status()
                timings.append(time.perf_counter() - began)
                seen += 2
            return timings

        async def timed(coroutine) -> tuple[object, float]:
            began = time.perf_counter()
            result = await coroutine
            return result, time.perf_counter() - began

        # Both groups play in the same time window, so the game and the echo bot share the machine alike.
        (_, game_seconds), (echo_timings, echo_seconds) = await asyncio.gather(
            timed(asyncio.gather(*(play_game(a) for a in autos))),
            timed(asyncio.gather(*(echo_player(20_000 + i) for i in range(players)))))
        echo = [x for timings in echo_timings for x in timings]
    finally:
        await client.aclose()
        db.dispose()
    return {"game": [x for a in autos for x in a.latencies], "game_seconds": game_seconds,
            "echo": echo, "echo_seconds": echo_seconds}


def main() -> None:
    result = asyncio.run(play(json.loads(sys.argv[1])))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
