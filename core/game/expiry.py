"""Closing open work: a player's skip, pause or withdrawal, and rounds and tasks abandoned past the
expiry time. Only the rows a conditional UPDATE changed lose their drafts or give their slot back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from core.outbox import Outbox
from storage.db import Transactions
from storage.models import LabelRound, Query, QueryStatus, RetrievalTask, RoundStatus, TaskStatus
from storage.settings import Settings


def close_rounds(session: Session, status: str, *where) -> list[int]:
    """Close the open rounds matching `where`. Only the rounds this UPDATE changed lose their
    drafts: a round submitted meanwhile keeps its queries."""
    closed = session.execute(update(LabelRound).where(LabelRound.status == RoundStatus.OPEN, *where)
                             .values(status=status).returning(LabelRound.id)
                             .execution_options(synchronize_session=False)).scalars().all()
    if closed:
        session.execute(delete(Query).where(col(Query.label_round_id).in_(closed),
                                            Query.status == QueryStatus.DRAFT)
                        .execution_options(synchronize_session=False))
    return list(closed)


def close_tasks(session: Session, status: str, *where, **values) -> list[int]:
    """Close the open tasks matching `where`; only the tasks this UPDATE changed give their
    round's retrieval slot back, so an answered or skipped task is never touched or released twice."""
    closed = session.execute(update(RetrievalTask).where(RetrievalTask.status == TaskStatus.OPEN, *where)
                             .values(status=status, **values)
                             .returning(RetrievalTask.id, RetrievalTask.label_round_id)
                             .execution_options(synchronize_session=False)).all()
    for _task_id, label_round_id in sorted(closed, key=lambda row: row.label_round_id or 0):
        release_round(session, label_round_id)
    return [task_id for task_id, _ in closed]


def release_round(session: Session, label_round_id: int | None) -> None:
    """A retrieval slot of the round goes back to the pool."""
    if label_round_id is not None:
        session.execute(update(LabelRound).where(LabelRound.id == label_round_id,
                                                 LabelRound.retrieval_count > 0)
                        .values(retrieval_count=LabelRound.retrieval_count - 1))


def expire_open_work(session: Session, player_id: int) -> None:
    """The player's open round or task closes (the caller holds the player's row lock)."""
    close_rounds(session, RoundStatus.EXPIRED, LabelRound.player_id == player_id)
    close_tasks(session, TaskStatus.EXPIRED, RetrievalTask.retriever_id == player_id)


class Expiry:
    def __init__(self, db: Transactions, settings: Settings, clock: Callable[[], datetime], outbox: Outbox) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.outbox = outbox

    def expire_abandoned(self) -> dict[str, int]:
        """Close rounds and tasks left open past the expiry time; their slots go back to the pool."""
        cutoff = self.clock() - timedelta(minutes=self.settings.rules.task_expiry_minutes)
        # One conditional UPDATE per table: work answered, skipped or submitted meanwhile no longer
        # matches `status = 'open'` (PostgreSQL re-checks a row it waited for), and only the rows
        # changed here lose their drafts or give their slot back.
        with self.db.write() as session:
            rounds = close_rounds(session, RoundStatus.EXPIRED, LabelRound.created_at < cutoff)
            tasks = close_tasks(session, TaskStatus.EXPIRED, RetrievalTask.created_at < cutoff)
        # Feedback held for a player's next screen does not wait for ever on a player who walked away.
        released = self.outbox.release_held(
            select(LabelRound.player_id).where(LabelRound.status == RoundStatus.OPEN),
            select(RetrievalTask.retriever_id).where(RetrievalTask.status == TaskStatus.OPEN))
        return {"rounds": len(rounds), "tasks": len(tasks), "notices_released": released}
