"""Group rounds across real processes: two members pressing at the same instant, their presses
delivered to two webhook workers on PostgreSQL, are ordered and scored once each; and a bot killed
with SIGKILL while a round is open loses no answered pick (the round closes after the restart)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from core.game import Game
from offline.demo_pack import PACK_DIR, load_demo_pack
from offline.sandbox import Sandbox
from storage.db import is_postgres
from storage.models import GroupPick, GroupRound, ScoreEvent
from storage.settings import Settings
from tests.processes import handled_in, shared_redis_url
from tests.test_scaleout import _free_port, _start

pytestmark = pytest.mark.asyncio

BOT = {"token": "4101:group-a", "framework": "ptb", "languages": ["en"], "name": "a"}
SECRET = "group-secret"
GROUP = -100_555


def _seed(db) -> tuple[int, list[int]]:
    """A submitted label round and three members who joined the game (through the engine)."""
    load_demo_pack(db)
    game = Game.open(db, Settings(storage={"database_url": str(db.url)}, _env_file=None))
    try:
        labeler = game.players.register(1, "L").id
        members = [game.players.register(user, f"M{user}").id for user in (2, 3, 4)]
        for player in (labeler, *members):
            game.players.set_language(player, "en")
            game.players.give_consent(player)
        task = game.assignment.next_task(labeler, prefer="labeler")
        game.labeling.add_query(labeler, task.round_id, "first idea")
        game.labeling.submit_round(labeler, task.round_id)
        return labeler, members
    finally:
        game.close()


def _env(db, base: str, tmp_path: Path, **extra) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("STICKTIONARY_")}
    env.update({"STICKTIONARY_DATABASE_URL": db.url.render_as_string(hide_password=False),
                "STICKTIONARY_TELEGRAM_API": base, "STICKTIONARY_STICKER_ROOT": str(PACK_DIR),
                "STICKTIONARY_MEDIA_CACHE": str(tmp_path / "media"), "STICKTIONARY_GOLD_RATE": "0",
                "STICKTIONARY_MODERATORS": "[]", "STICKTIONARY_BOTS": json.dumps([BOT]), **extra})
    return env


async def _sim(client: httpx.AsyncClient, action: str, **body) -> dict:
    response = await client.post(f"/sim/{action}", json={"token": BOT["token"], **body})
    assert response.status_code == 200, response.text
    return response.json()["result"]


async def _post_round(client, db) -> tuple[dict, GroupRound]:
    finished = handled_in(db, "a", patience=120)
    await _sim(client, "group", chat_id=GROUP, added_by=2)
    sent = await _sim(client, "message", chat_id=GROUP, user_id=2, text="/round en")
    await finished(sent["update_id"])
    transcript = await _sim(client, "transcript", chat_id=GROUP)
    message = next(e for e in transcript if e.get("by") == "bot" and "photo" in e)
    with Session(db) as session:
        found = session.exec(select(GroupRound)).one()
    return message, found


async def _closed(db, round_id: int) -> None:
    for _ in range(1200):
        with Session(db) as session:
            if session.get(GroupRound, round_id).status == "closed":
                return
        await asyncio.sleep(0.1)
    raise AssertionError("the round was never closed")


async def _stop(processes) -> None:
    for process, _log in processes:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    for process, log in processes:
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
        await log


@pytest.mark.parametrize("lanes", ["database", "redis"])
async def test_two_members_pressing_at_once_on_two_webhook_workers(db, tmp_path, lanes):
    """`lanes` "redis": the workers share the group's lane through Redis (as deployed), so the two
    presses queue there; "database": each worker keeps its own lanes, so the two presses meet in the
    database, where the round's row lock orders them."""
    if not is_postgres(db):
        pytest.skip("concurrency is tested on PostgreSQL (SQLite has one writer)")
    redis = {"STICKTIONARY_REDIS_URL": shared_redis_url()} if lanes == "redis" else {}
    labeler, members = _seed(db)
    ports = [_free_port() for _ in range(2)]
    sandbox = Sandbox(rate_limits=False, webhook_spread=[f"http://127.0.0.1:{p}" for p in ports])
    sandbox.add_bot(BOT["token"], "group_a_bot")
    base = await sandbox.start()
    client = httpx.AsyncClient(base_url=base, timeout=60)
    env = _env(db, base, tmp_path, STICKTIONARY_WEBHOOK_SECRET=SECRET,
               STICKTIONARY_WEBHOOK_URL=f"http://127.0.0.1:{ports[0]}", STICKTIONARY_GROUP_ROUND_SECONDS="8", **redis)
    processes = []
    try:
        for port in ports:
            processes.append(await _start(f"worker {port}", ["run"], {
                **env, "STICKTIONARY_WEBHOOK_LISTEN": f"127.0.0.1:{port}"}, tmp_path / f"worker{port}.log",
                "is running"))
        message, found = await _post_round(client, db)
        target = found.candidate_ids.index(found.sticker_id) + 1
        # Two members at the same instant: the sandbox hands one press to each worker.
        presses = await asyncio.gather(*(
            _sim(client, "press", chat_id=GROUP, user_id=user, message_id=message["message_id"],
                 data=f"gp:{found.id}:{target}") for user in (3, 4)))
        finished = handled_in(db, "a", patience=120)
        for press in presses:
            await finished(press["update_id"])
        await _closed(db, found.id)
        stats = await _sim(client, "stats")
        transcript = await _sim(client, "transcript", chat_id=GROUP)
    finally:
        await _stop(processes)
        await client.aclose()
        await sandbox.stop()
    for log in tmp_path.glob("*.log"):
        assert "Traceback" not in log.read_text(errors="replace"), log
    with Session(db) as session:
        picks = session.exec(select(GroupPick).order_by(GroupPick.id)).all()
        # Ordered (one first, one second) and scored once each: 3 for the first, 2 for the second.
        assert sorted(p.player_id for p in picks) == sorted(members[1:])
        assert [p.points for p in picks] == [3, 2]
        hits = session.exec(select(ScoreEvent).where(ScoreEvent.reason == "retriever_hit")).all()
        assert sorted((e.player_id, e.points) for e in hits) == sorted((p.player_id, p.points) for p in picks)
        assert sorted(e.points for e in session.exec(select(ScoreEvent).where(
            ScoreEvent.player_id == labeler, ScoreEvent.reason == "labeler_hit"))) == [2, 3]
    answered = [e for e in transcript if e.get("callback_id")]
    assert len(answered) == 2 and all(e.get("answer") for e in answered)
    assert stats.get("press_answered_again", 0) == 0


async def test_a_kill_during_an_open_round_loses_no_answered_pick(db, tmp_path):
    labeler, members = _seed(db)
    sandbox = Sandbox(rate_limits=False)
    sandbox.add_bot(BOT["token"], "group_a_bot")
    base = await sandbox.start()
    client = httpx.AsyncClient(base_url=base, timeout=60)
    env = _env(db, base, tmp_path, STICKTIONARY_GROUP_ROUND_SECONDS="600")
    processes = []
    try:
        processes.append(await _start("bot", ["run"], env, tmp_path / "bot1.log", "is running"))
        message, found = await _post_round(client, db)
        target = found.candidate_ids.index(found.sticker_id) + 1
        finished = handled_in(db, "a", patience=120)
        for user, position in ((3, target), (2, target % len(found.candidate_ids) + 1), (4, target)):
            press = await _sim(client, "press", chat_id=GROUP, user_id=user, message_id=message["message_id"],
                               data=f"gp:{found.id}:{position}")
            await finished(press["update_id"])
        processes[0][0].send_signal(signal.SIGKILL)
        await processes[0][0].wait()
        with Session(db) as session:  # the round is open, its answered picks are kept
            assert session.get(GroupRound, found.id).status == "open"
            assert len(session.exec(select(GroupPick)).all()) == 3
            session.exec(select(GroupRound)).one().closes_at  # noqa: B018
        # Its time runs out while the bot is down; the restarted bot closes and scores it.
        from sqlalchemy import update

        from storage.models import utcnow
        with Session(db) as session:
            session.execute(update(GroupRound).where(GroupRound.id == found.id).values(closes_at=utcnow()))
            session.commit()
        processes.append(await _start("bot again", ["run"], env, tmp_path / "bot2.log", "is running"))
        await _closed(db, found.id)
        for _ in range(300):  # the restarted bot edits the round's message into its result
            current = [e for e in await _sim(client, "transcript", chat_id=GROUP)
                       if e.get("by") == "bot" and e.get("message_id") == message["message_id"]][-1]
            if not current.get("reply_markup"):
                break
            await asyncio.sleep(0.1)
    finally:
        await _stop(processes)
        await client.aclose()
        await sandbox.stop()
    assert not current.get("reply_markup")
    with Session(db) as session:
        picks = session.exec(select(GroupPick).order_by(GroupPick.id)).all()
        assert [(p.player_id, p.points) for p in picks] == [(members[1], 3), (members[0], 0), (members[2], 2)]
        assert all(p.task_id for p in picks)
