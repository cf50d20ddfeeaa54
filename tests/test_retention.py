"""Retention prunes exactly the rows the rules allow, on SQLite and PostgreSQL, and never an unhandled
update or an undelivered message, however old."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from core.retention import RetentionRules, prune
from jobs.schedule import run_job
from jobs.tasks import JOBS, JobContext
from storage.db import session_scope
from storage.models import InboxStatus, InboxUpdate, OutboxMessage, OutboxStatus, SearchChange, Sticker
from storage.settings import SettingsProblem, load_settings

NOW = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)
OLD, RECENT = NOW - timedelta(days=400), NOW - timedelta(hours=1)


def _fill(db) -> None:
    """One row of every status, once old and once recent, in each table."""
    with session_scope(db) as session:
        session.add(Sticker(key="1.png", file_path="1.png", format="png"))
        session.flush()
        sticker_id = session.exec(select(Sticker.id)).one()
        update_id = 0
        for age, when in (("old", OLD), ("recent", RECENT)):
            for status in InboxStatus:
                update_id += 1
                session.add(InboxUpdate(bot_key="en", update_id=update_id, chat_key=1, payload={}, status=status,
                                        received_at=when, handled_at=when if status != "received" else None,
                                        done_at=when if status in ("done", "skipped") else None))
            for status in OutboxStatus:
                session.add(OutboxMessage(dedupe_key=f"{age}:{status}", kind="feedback_hit", payload={},
                                          status=status, created_at=when, next_attempt_at=when, attempts=1,
                                          sent_at=when if status == "sent" else None,
                                          claimed_by="bot" if status == "sending" else None,
                                          lease_until=when if status == "sending" else None))
        for when in (OLD, OLD, RECENT, OLD):  # the newest row is old too: it stays all the same
            session.add(SearchChange(language="en", sticker_id=sticker_id, reason="validated", created_at=when))


def _inbox(db) -> set[tuple[str, str]]:
    with Session(db) as session:
        return {("old" if r.received_at < NOW - timedelta(days=1) else "recent", r.status)
                for r in session.exec(select(InboxUpdate)).all()}


def _outbox(db) -> set[str]:
    with Session(db) as session:
        return set(session.exec(select(OutboxMessage.dedupe_key)).all())


def _search_log(db) -> list[int]:
    with Session(db) as session:
        return list(session.exec(select(SearchChange.id).order_by(SearchChange.id)).all())


def test_the_job_prunes_exactly_the_eligible_rows(db, settings):
    _fill(db)
    assert "retention" in JOBS
    outcome = run_job(JobContext(db, settings), "retention", NOW)
    assert outcome.status == "done", outcome.error
    assert outcome.result["removed"] == {"inbox": 3, "outbox_sent": 1, "search_log": 2}
    assert outcome.result["before"]["inbox"] == (NOW - timedelta(days=settings.storage.retention_inbox_days)).isoformat()
    # Unhandled (received) and undelivered (handled) updates stay however old; finished old ones go.
    assert _inbox(db) == {("old", "received"), ("old", "handled")} | {("recent", s.value) for s in InboxStatus}
    # Only the old sent message goes: pending, sending, held and dead ones are owed or kept for a person.
    assert _outbox(db) == {f"{age}:{s.value}" for age in ("old", "recent") for s in OutboxStatus} - {"old:sent"}
    # Old change-log rows go, except the newest row of all (the log's position for a starting process).
    assert _search_log(db) == [3, 4]
    # A second run finds nothing more.
    again = prune(db, RetentionRules.from_settings(settings), NOW)
    assert again["removed"] == {"inbox": 0, "outbox_sent": 0, "search_log": 0}


def test_ages_and_batches(db):
    with session_scope(db) as session:
        for update_id in range(1, 8):
            session.add(InboxUpdate(bot_key="zh", update_id=update_id, chat_key=update_id, payload={},
                                    status=InboxStatus.DONE, received_at=NOW - timedelta(days=update_id)))
        for n in range(1, 8):
            session.add(OutboxMessage(dedupe_key=f"k{n}", kind="leaderboard", payload={}, status=OutboxStatus.SENT,
                                      created_at=NOW - timedelta(days=40 + n), sent_at=NOW - timedelta(days=30 + n)))
    rules = RetentionRules(inbox_days=3.5, outbox_sent_days=33.5, search_log_days=1)
    result = prune(db, rules, NOW, batch=2)  # several batches, the last one partial
    assert result["removed"] == {"inbox": 4, "outbox_sent": 4, "search_log": 0}
    with Session(db) as session:
        assert sorted(session.exec(select(InboxUpdate.update_id)).all()) == [1, 2, 3]
    assert _outbox(db) == {"k1", "k2", "k3"}


def test_zero_keeps_forever(db):
    _fill(db)
    result = prune(db, RetentionRules(inbox_days=0, outbox_sent_days=0, search_log_days=None), NOW)
    assert result["removed"] == {"inbox": 0, "outbox_sent": 0, "search_log": 0}
    assert result["before"] == {"inbox": None, "outbox_sent": None, "search_log": None}
    assert len(_outbox(db)) == 2 * len(OutboxStatus) and len(_search_log(db)) == 4


@pytest.mark.parametrize(("name", "value"), [("retention_inbox_days", 0.5), ("retention_outbox_sent_days", 7),
                                             ("retention_search_log_days", 0.1)])
def test_unsafe_retention_settings_are_refused(name, value):
    with pytest.raises(SettingsProblem, match=f"STICKTIONARY_{name.upper()}.*keep at least"):
        load_settings(_env_file=None, storage={name: value})
