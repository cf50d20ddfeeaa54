"""Scheduled jobs with a controllable clock, the exactly-once guard, and two real scheduler processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, col, select

from core.game import GameError
from core.game.prizes import last_complete_period, period_start
from core.nicknames import default_nickname
from jobs.runner import run_once
from jobs.schedule import ScheduleError, check_schedules, latest_fire_time, parse_schedule, run_job
from jobs.tasks import JobContext
from storage.db import session_scope
from storage.export_files import list_exports
from storage.locks import exclusive
from storage.models import (
    JobRun,
    LabelRound,
    OutboxMessage,
    PlaySession,
    Prize,
    RetrievalTask,
    RoundStatus,
    ScoreEvent,
    TaskStatus,
)
from tests.helpers import make_player, make_world

MONDAY = datetime(2026, 11, 30, 0, 15, tzinfo=UTC)  # a Monday, just after the week closed


def _award(db, player_id, points, when, key, language="en"):
    with session_scope(db) as session:
        session.add(ScoreEvent(idempotency_key=key, player_id=player_id, language=language, points=points,
                               reason="retriever_hit", created_at=when))


def _outbox(db, kind):
    with Session(db) as session:
        return list(session.exec(select(OutboxMessage).where(OutboxMessage.kind == kind)
                                 .order_by(OutboxMessage.id)).all())


# ---------------------------------------------------------------------------- periods and schedules
def test_periods_in_the_operators_time_zone():
    tz = ZoneInfo("Asia/Singapore")
    moment = datetime(2026, 11, 29, 17, 0, tzinfo=UTC)  # Monday 01:00 in Singapore
    assert period_start("day", moment, tz) == datetime(2026, 11, 30, tzinfo=tz)
    assert period_start("week", moment, tz) == datetime(2026, 11, 30, tzinfo=tz)
    assert last_complete_period("week", moment, tz) == (datetime(2026, 11, 23, tzinfo=tz), datetime(2026, 11, 30, tzinfo=tz))
    assert last_complete_period("month", moment, tz) == (datetime(2026, 10, 1, tzinfo=tz), datetime(2026, 11, 1, tzinfo=tz))


def test_schedules_are_checked(settings):
    assert set(check_schedules(settings)) == {"leaderboard_daily", "leaderboard_weekly", "prizes", "export",
                                              "expiry", "export_retention", "retention", "partners"}
    tz = ZoneInfo("UTC")
    for bad in ("0 3 * *", "0 3 * * 0", "61 3 * * *"):
        with pytest.raises(ScheduleError):
            parse_schedule(bad, tz)
    with pytest.raises(ScheduleError, match="time zone"):
        check_schedules(settings.replace(jobs={"jobs_timezone": "Mars/Olympus"}))
    every_two = parse_schedule("*/2 * * * * *", tz)
    now = datetime(2026, 11, 30, 3, 0, 5, 300_000, tzinfo=UTC)
    assert latest_fire_time(every_two, now) == datetime(2026, 11, 30, 3, 0, 4, tzinfo=UTC)
    nightly = parse_schedule("0 3 * * *", tz)
    assert latest_fire_time(nightly, now) == datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    assert latest_fire_time(nightly, now + timedelta(hours=1)) is None  # past the grace period


# ---------------------------------------------------------------------------- each job
def test_prize_tally_top_and_participation(db, settings):
    game = make_world(db, settings, stickers=4, languages=("en", "zh"))
    settings = settings.replace(rules={"prize_top_n": 2, "session_min_tasks": 3})
    players = [make_player(game, 100 + i) for i in range(4)]
    zh_player = make_player(game, 200, "zh")
    last_week = datetime(2026, 11, 25, 12, tzinfo=UTC)
    for i, (player, points) in enumerate(zip(players, (5, 9, 1, 7), strict=True)):
        _award(db, player, points, last_week, f"w{i}")
    _award(db, players[2], 50, MONDAY + timedelta(minutes=1), "this-week")  # after the period: not counted
    _award(db, zh_player, 4, last_week, "zh-award", language="zh")
    with session_scope(db) as session:
        session.add(PlaySession(player_id=players[0], language="en", started_at=last_week, task_count=3))
        session.add(PlaySession(player_id=players[0], language="en", started_at=last_week, task_count=5))
        session.add(PlaySession(player_id=players[3], language="en", started_at=last_week, task_count=2))  # too short

    outcome = run_job(JobContext(db, settings), "prizes", MONDAY)
    assert outcome.status == "done"
    assert outcome.result["counts"]["en"] == {"top": 2, "participation": 1, "new": 3}
    with Session(db) as session:
        prizes = session.exec(select(Prize).order_by(Prize.language, Prize.kind, Prize.rank)).all()
    top_en = [(p.player_id, p.rank, p.points) for p in prizes if p.kind == "top" and p.language == "en"]
    assert top_en == [(players[1], 1, 9), (players[3], 2, 7)]
    participation = [(p.player_id, p.sessions) for p in prizes if p.kind == "participation"]
    assert participation == [(players[0], 2)]
    assert [(p.player_id, p.rank) for p in prizes if p.language == "zh"] == [(zh_player, 1)]
    assert prizes[0].period_start == datetime(2026, 11, 23, tzinfo=UTC)
    assert len(_outbox(db, "prizes_tallied")) == 1

    # The same tally again (another slot, same period) adds nothing and tells no one twice.
    again = JobContext(db, settings).prizes(MONDAY).tally(*last_complete_period("week", MONDAY, ZoneInfo("UTC")),
                                                                "week")
    assert again["en"]["new"] == 0 and len(_outbox(db, "prizes_tallied")) == 1


def test_moderators_mark_prizes_delivered(db, settings):
    game = make_world(db, settings, stickers=2)
    winner, moderator = make_player(game, 1), make_player(game, 2)
    game.players.set_moderator(moderator)
    _award(db, winner, 3, datetime(2026, 11, 25, tzinfo=UTC), "k")
    prizes = game.prizes
    prizes.tally(datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC), "week")
    with pytest.raises(GameError, match="not_moderator"):
        prizes.pending(winner)
    [pending] = prizes.pending(moderator)
    assert pending.player_id == winner and pending.rank == 1
    with pytest.raises(GameError, match="not_moderator"):
        prizes.mark_delivered(winner, pending.id)
    assert prizes.mark_delivered(moderator, pending.id).delivered_at is not None
    with pytest.raises(GameError, match="prize_delivered"):
        prizes.mark_delivered(moderator, pending.id)
    assert prizes.pending(moderator) == []


def test_leaderboard_posts_go_to_chats_and_opted_in_players(db, settings):
    settings = settings.replace(jobs={"leaderboard_chats": {"en": [-1001], "zh": [-2002]}})
    game = make_world(db, settings, stickers=2, languages=("en", "zh"))
    keen, shy, gone = make_player(game, 1), make_player(game, 2), make_player(game, 3)
    game.players.set_leaderboard_opt_in(keen, True)
    game.players.set_leaderboard_opt_in(gone, True)
    game.players.withdraw_consent(gone)
    now = datetime(2026, 12, 2, 20, tzinfo=UTC)  # a Wednesday
    _award(db, shy, 6, now - timedelta(hours=2), "today")
    _award(db, keen, 2, now - timedelta(days=1), "yesterday")  # not today
    outcome = run_job(JobContext(db, settings), "leaderboard_daily", now)
    assert outcome.result["posted"] == {"en": 2, "zh": 1}
    posts = _outbox(db, "leaderboard")
    assert {(p.player_id, p.chat_id) for p in posts} == {(keen, None), (None, -1001), (None, -2002)}
    en_post = next(p for p in posts if p.chat_id == -1001)
    # shown by nickname (generated: the player chose none), never by the Telegram name "player2"
    assert en_post.payload["rows"] == [[1, default_nickname(shy, "en"), 6]] and en_post.payload["period"] == "day"
    run_job(JobContext(db, settings), "leaderboard_daily", now + timedelta(seconds=1))
    assert len(_outbox(db, "leaderboard")) == 3  # once per day and recipient
    weekly = run_job(JobContext(db, settings), "leaderboard_weekly", now)
    assert weekly.result["posted"]["en"] == 2
    week_post = [p for p in _outbox(db, "leaderboard") if p.payload["period"] == "week" and p.chat_id == -1001][0]
    assert week_post.payload["rows"] == [[1, default_nickname(shy, "en"), 6], [2, default_nickname(keen, "en"), 2]]


def test_expiry_job_closes_abandoned_work(db, settings):
    game = make_world(db, settings, stickers=4)
    labeler = make_player(game, 1)
    task = game.assignment.next_task(labeler, prefer="labeler")
    now = datetime.now(UTC) + timedelta(minutes=settings.rules.task_expiry_minutes + 1)
    outcome = run_job(JobContext(db, settings), "expiry", now)
    assert outcome.result == {"rounds": 1, "tasks": 0, "notices_released": 0}
    with Session(db) as session:
        assert session.get(LabelRound, task.round_id).status == RoundStatus.EXPIRED
        assert not session.exec(select(RetrievalTask).where(RetrievalTask.status == TaskStatus.OPEN)).all()


def test_export_and_retention_jobs(db, settings):
    make_world(db, settings, stickers=3)
    settings = settings.replace(exports={"export_keep": 2})
    context = JobContext(db, settings)
    for day in range(3):
        assert run_job(context, "export", datetime(2026, 11, 28 + day, 3, tzinfo=UTC)).status == "done"
    assert len(list_exports(settings.exports.export_dir)) == 3
    outcome = run_job(context, "export_retention", datetime(2026, 11, 30, 3, 30, tzinfo=UTC))
    assert outcome.result["removed"] == ["2026-11-28T030000Z"]
    assert list_exports(settings.exports.export_dir) == ["2026-11-29T030000Z", "2026-11-30T030000Z"]


# ---------------------------------------------------------------------------- exactly once
def test_a_slot_runs_once_and_a_held_lock_stands_others_down(db):
    slot = datetime(2026, 11, 30, 3, tzinfo=UTC)
    calls = []
    first = run_once(db, "demo", slot, lambda: calls.append(1) or {"n": len(calls)})
    second = run_once(db, "demo", slot, lambda: calls.append(1) or {"n": len(calls)})
    assert (first.status, second.status, calls) == ("done", "taken", [1])
    with exclusive(db, "job:demo") as acquired:
        assert acquired
        blocked = run_once(db, "demo", slot + timedelta(days=1), lambda: calls.append(1) or {})
    assert blocked.status == "locked" and calls == [1]
    failed = run_once(db, "demo", slot + timedelta(days=2), lambda: 1 / 0)
    assert failed.status == "failed" and "ZeroDivisionError" in failed.error
    with Session(db) as session:
        runs = session.exec(select(JobRun).order_by(JobRun.scheduled_for)).all()
    assert [(r.status, r.result) for r in runs] == [("done", {"n": 1}), ("failed", {})]
    assert "ZeroDivisionError" in runs[1].error


def test_two_scheduler_processes_fire_each_slot_once(db, tmp_path):
    """Two `sticktionary jobs start` processes on one database, a job every second: each slot runs
    in exactly one of them."""
    env = dict(os.environ, STICKTIONARY_DATABASE_URL=db.url.render_as_string(hide_password=False),
               STICKTIONARY_SCHEDULE_EXPIRY="* * * * * *", STICKTIONARY_EXPORT_DIR=str(tmp_path / "exports"),
               PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "sticktionary.cli", "jobs", "start", "--only", "expiry"]
    processes = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for _ in range(2)]
    line = re.compile(r"job expiry slot (\S+): (\w+)")
    outputs: list[list[str]] = [[], []]

    def read(process, lines) -> None:
        for text in process.stdout:
            lines.append(text)

    readers = [threading.Thread(target=read, args=(p, out), daemon=True) for p, out in zip(processes, outputs,
                                                                                         strict=True)]
    for reader in readers:
        reader.start()
    try:
        # Until both schedulers have fired and three slots ran (a loaded machine starts them slowly).
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            found = [[m for m in map(line.search, lines) if m] for lines in outputs]
            if all(found) and sum(m.group(2) == "done" for f in found for m in f) >= 3:
                break
            time.sleep(0.2)
    finally:
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            process.wait(timeout=30)
        for reader in readers:
            reader.join(10)
    outputs = ["".join(lines) for lines in outputs]
    per_process = [line.findall(output) for output in outputs]
    for output, found in zip(outputs, per_process, strict=True):
        assert found, output  # both schedulers were up and fired
    ran = [slot for found in per_process for slot, status in found if status == "done"]
    assert len(ran) == len(set(ran)) >= 3, per_process
    stood_down = [slot for found in per_process for slot, status in found if status in ("taken", "locked")]
    assert set(stood_down) <= set(ran)
    with Session(db) as session:
        runs = session.exec(select(JobRun).where(JobRun.job == "expiry")).all()
    assert sorted(r.scheduled_for.isoformat() for r in runs if r.status == "done") == sorted(ran)


def test_the_jobs_command_runs_one_job(db, tmp_path):
    env = dict(os.environ, STICKTIONARY_DATABASE_URL=db.url.render_as_string(hide_password=False),
               STICKTIONARY_EXPORT_DIR=str(tmp_path / "exports"))
    command = [sys.executable, "-m", "sticktionary.cli", "jobs", "run", "expiry", "--at", "2026-11-30T03:00:00+00:00"]
    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert '"status": "done"' in first.stdout, first.stderr
    assert '"status": "taken"' in second.stdout, second.stderr
    with Session(db) as session:
        assert len(session.exec(select(JobRun).where(col(JobRun.job) == "expiry")).all()) == 1


def test_retention_leaves_the_folder_of_an_export_in_progress(db, settings):
    from jobs.runner import job_lock
    from storage.export_files import PARTIAL_PREFIX

    make_world(db, settings, stickers=2)
    context = JobContext(db, settings)
    run_job(context, "export", datetime(2026, 11, 29, 3, tzinfo=UTC))
    in_progress = settings.exports.export_dir / f"{PARTIAL_PREFIX}2026-11-30T030000Z-999"
    in_progress.mkdir()
    with job_lock(db, "export") as acquired:  # another process is exporting
        assert acquired
        outcome = run_job(context, "export_retention", datetime(2026, 11, 30, 3, 30, tzinfo=UTC))
    assert outcome.result["partials"] == [] and in_progress.exists()
    outcome = run_job(context, "export_retention", datetime(2026, 11, 30, 4, 30, tzinfo=UTC))
    assert outcome.result["partials"] == [in_progress.name] and not in_progress.exists()


def test_a_slot_whose_runner_died_or_that_failed_is_run_again(db):
    from datetime import timedelta

    from jobs.runner import MAX_ATTEMPTS, RETRY_AFTER, run_once, unfinished_slots
    from storage.db import session_scope
    from storage.models import utcnow

    now = utcnow()
    crashed, failing = now - timedelta(hours=1), now - timedelta(hours=2)
    with session_scope(db) as session:  # a runner killed mid-run: its row still says running
        session.add(JobRun(job="expiry", scheduled_for=crashed, runner="gone:1", status="running", started_at=crashed,
                           result={}))
    assert unfinished_slots(db) == [("expiry", crashed)]
    ran = []
    outcome = run_once(db, "expiry", crashed, lambda: ran.append(1) or {"ok": 1})
    assert outcome.status == "done" and ran == [1]
    assert run_once(db, "expiry", crashed, lambda: ran.append(2) or {}).status == "taken"  # done stays done

    def broken() -> dict:
        raise RuntimeError("the export disk is full")

    assert run_once(db, "prizes", failing, broken).status == "failed"
    assert unfinished_slots(db) == []  # not before RETRY_AFTER
    assert unfinished_slots(db, now + 2 * RETRY_AFTER) == [("prizes", failing)]
    for _ in range(MAX_ATTEMPTS - 1):
        assert run_once(db, "prizes", failing, broken).status == "failed"
    assert run_once(db, "prizes", failing, lambda: {}).status == "taken"  # attempts used up: a person looks
    assert unfinished_slots(db, now + 2 * RETRY_AFTER) == []
    with Session(db) as session:
        rows = {run.job: run for run in session.exec(select(JobRun)).all()}
    assert rows["expiry"].attempts == 2 and rows["expiry"].status == "done"
    assert rows["prizes"].attempts == MAX_ATTEMPTS and rows["prizes"].status == "failed"
