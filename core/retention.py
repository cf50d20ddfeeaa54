"""Retention: the rows that may go, and only those.

Three tables grow with every update, message and change; the `retention` job (jobs/tasks.py) prunes
them by age, as the operator's settings allow (0 keeps a table's rows forever):

- **Inbox** (`InboxUpdate`): updates whose handling is finished — done, skipped or failed — received
  more than `inbox_days` ago. An update still `received` (not handled) or `handled` (its replies not
  delivered yet) is never deleted, whatever its age. The row is also what makes a redelivered update
  a no-op, and Telegram redelivers for up to 24 hours: hence at least a day.
- **Outbox** (`OutboxMessage`): messages Telegram accepted (`sent`) more than `outbox_sent_days` ago.
  Pending, sending, held and dead messages stay. The dedupe key goes with the row, so the age must
  outlast every job that may enqueue the same message again (storage/settings.py says which).
- **Search change log** (`SearchChange`): each process's search index follows the log from a position
  it keeps in memory (core/search_follower.py); positions are not in the database, so no process can
  say what every other one has applied. A process applies new rows within its poll interval (half a
  second) and a starting one builds from the queries themselves, not from the log, so a row older than
  `search_log_days` can only be needed by a process that has not looked at the log for that long — a
  wedged one, which a restart rebuilds. The newest row always stays, so a starting process still reads
  the log's true position (a log emptied to nothing would make it take every new id as a gap).

Every delete re-states its condition (status and age) in the DELETE itself, so a row that changed
since it was selected is left alone. Deletes go in batches of BATCH rows, one short transaction
each, so a first run over a large backlog never holds locks for long.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, func, select, tuple_
from sqlmodel import col

from storage.db import session_scope
from storage.models import InboxStatus, InboxUpdate, OutboxMessage, OutboxStatus, SearchChange

BATCH = 5_000
FINISHED_UPDATES = (InboxStatus.DONE, InboxStatus.SKIPPED, InboxStatus.FAILED)


@dataclass(frozen=True)
class RetentionRules:
    """Days each kind of row is kept; 0 (or None) keeps it forever."""

    inbox_days: float | None = 14
    outbox_sent_days: float | None = 90
    search_log_days: float | None = 7

    @classmethod
    def from_settings(cls, settings) -> RetentionRules:
        return cls(settings.storage.retention_inbox_days, settings.storage.retention_outbox_sent_days,
                   settings.storage.retention_search_log_days)


def _cutoff(now: datetime, days: float | None) -> datetime | None:
    return now - timedelta(days=days) if days else None


def prune(db: Engine, rules: RetentionRules, now: datetime, batch: int = BATCH) -> dict:
    """Delete what the rules allow as of `now`; returns how many rows of each kind went, and the cutoffs."""
    cutoffs = {"inbox": _cutoff(now, rules.inbox_days), "outbox_sent": _cutoff(now, rules.outbox_sent_days),
               "search_log": _cutoff(now, rules.search_log_days)}
    removed = {
        "inbox": prune_inbox(db, cutoffs["inbox"], batch) if cutoffs["inbox"] else 0,
        "outbox_sent": prune_sent_outbox(db, cutoffs["outbox_sent"], batch) if cutoffs["outbox_sent"] else 0,
        "search_log": prune_search_log(db, cutoffs["search_log"], batch) if cutoffs["search_log"] else 0,
    }
    return {"removed": removed,
            "before": {kind: cutoff.isoformat() if cutoff else None for kind, cutoff in cutoffs.items()}}


def _in_batches(db: Engine, remove) -> int:
    """Run `remove()` (a DELETE of at most one batch) in its own transaction until it deletes nothing."""
    total = 0
    while True:
        with session_scope(db) as session:
            removed = session.execute(remove()).rowcount
        if not removed:
            return total
        total += removed


def prune_inbox(db: Engine, before: datetime, batch: int = BATCH) -> int:
    """Finished updates received before `before`."""
    eligible = (col(InboxUpdate.status).in_(FINISHED_UPDATES), col(InboxUpdate.received_at) < before)
    key = tuple_(InboxUpdate.bot_key, InboxUpdate.update_id)
    chosen = select(InboxUpdate.bot_key, InboxUpdate.update_id).where(*eligible).limit(batch)
    return _in_batches(db, lambda: delete(InboxUpdate).where(key.in_(chosen), *eligible))


def prune_sent_outbox(db: Engine, before: datetime, batch: int = BATCH) -> int:
    """Messages Telegram accepted before `before`."""
    eligible = (col(OutboxMessage.status) == OutboxStatus.SENT, col(OutboxMessage.sent_at) < before)
    chosen = select(OutboxMessage.id).where(*eligible).order_by(OutboxMessage.id).limit(batch)
    return _in_batches(db, lambda: delete(OutboxMessage).where(col(OutboxMessage.id).in_(chosen), *eligible))


def prune_search_log(db: Engine, before: datetime, batch: int = BATCH) -> int:
    """Change-log rows written before `before`, except the newest row."""
    newest = select(func.max(SearchChange.id)).scalar_subquery()
    eligible = (col(SearchChange.created_at) < before, col(SearchChange.id) < newest)
    chosen = select(SearchChange.id).where(*eligible).order_by(SearchChange.id).limit(batch)
    return _in_batches(db, lambda: delete(SearchChange).where(col(SearchChange.id).in_(chosen), *eligible))


__all__ = ["RetentionRules", "prune", "prune_inbox", "prune_sent_outbox", "prune_search_log", "BATCH"]
