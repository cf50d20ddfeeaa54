"""`sticktionary bench groups`: what a group round costs the engine, on SQLite and PostgreSQL. Each
round is posted, raced by three members (the first two right, the third wrong) and closed, which
scores three judgments; the figures are the median and 95th percentile of each step, in ms."""

from __future__ import annotations

import random
import statistics
import tempfile
import time


def _percentiles(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000, 2)}


def _rounds(url: str, rounds: int) -> dict:
    from core.game import Game
    from offline.demo_pack import load_demo_pack
    from storage.db import make_engine
    from storage.migrate import upgrade
    from storage.settings import Settings

    engine = make_engine(url)
    upgrade(engine)
    load_demo_pack(engine)
    settings = Settings(storage={"database_url": url},
                        rules={"gold_rate": 0.0, "retrievals_per_round": rounds + 1}, _env_file=None)
    game = Game.open(engine, settings, rng=random.Random(5))
    try:
        members = []
        for user in range(1, 5):
            player = game.players.register(user, f"member {user}").id
            game.players.set_language(player, "en")
            game.players.give_consent(player)
            members.append(player)
        labeler, racers = members[0], members[1:]
        task = game.assignment.next_task(labeler, prefer="labeler")
        game.labeling.add_query(labeler, task.round_id, "when the joke lands")
        game.labeling.submit_round(labeler, task.round_id)
        timings: dict[str, list[float]] = {"post": [], "pick": [], "close": []}
        for _ in range(rounds):
            started = time.perf_counter()
            view = game.group_rounds.post(-1, "bench", racers[0], "en", "en").round
            timings["post"].append(time.perf_counter() - started)
            right = next(n for n, c in enumerate(view.candidates, 1) if c.id == _target(engine, view.round_id))
            for member, position in zip(racers, (right, right, right % len(view.candidates) + 1), strict=True):
                started = time.perf_counter()
                game.group_rounds.pick(-1, view.round_id, member, position)
                timings["pick"].append(time.perf_counter() - started)
            started = time.perf_counter()
            assert game.group_rounds.close(view.round_id)
            timings["close"].append(time.perf_counter() - started)
        return {step: _percentiles(values) for step, values in timings.items()}
    finally:
        game.close()
        engine.dispose()


def _target(engine, round_id: int) -> int:
    from sqlmodel import Session

    from storage.models import GroupRound

    with Session(engine) as session:
        return session.get(GroupRound, round_id).sticker_id


def bench_group_rounds(rounds: int = 100, postgres_admin_url: str | None = None) -> dict:
    result: dict = {"rounds": rounds}
    with tempfile.TemporaryDirectory() as tmp:
        result["sqlite"] = _rounds(f"sqlite:///{tmp}/groups.sqlite3", rounds)
    result["postgres"] = None
    if postgres_admin_url:
        from offline.databases import throwaway_postgres_database

        with throwaway_postgres_database(postgres_admin_url, "sticktionary_bench") as url:
            result["postgres"] = _rounds(url, rounds)
    return result
