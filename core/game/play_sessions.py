"""Play sessions: a run of finished tasks without a long pause (what participation rewards count),
and the role a player had last (the next task alternates)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from storage.models import Player, PlaySession


def finish_task(session: Session, player_id: int, role: str, language: str, now: datetime,
                session_gap_minutes: float, counts: bool = True) -> None:
    """Record that the player finished (or, `counts=False`, skipped) a task of `role`. The caller
    holds the player's row lock, so which session this task belongs to cannot race; the count itself
    changes in SQL."""
    player = session.get(Player, player_id)
    player.last_role = role
    session.add(player)
    if not counts:
        return
    gap = timedelta(minutes=session_gap_minutes)
    latest = session.exec(select(PlaySession.id).where(PlaySession.player_id == player_id)
                          .order_by(col(PlaySession.id).desc()).limit(1)).first()
    continued = latest is not None and session.execute(
        update(PlaySession).where(PlaySession.id == latest, PlaySession.language == language,
                                  PlaySession.last_activity_at >= now - gap)
        .values(task_count=PlaySession.task_count + 1, last_activity_at=now)
        .execution_options(synchronize_session=False)).rowcount
    if not continued:
        session.add(PlaySession(player_id=player_id, language=language, started_at=now, last_activity_at=now,
                                task_count=1))
