"""Standings: totals, ranks and leaderboards, all derived from the point ledger. Reading them needs
neither the search indexes nor the outbox."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from core.game.errors import GameError
from core.nicknames import nickname_of
from core.views import LeaderboardRow, PlayerStats
from core.vocabulary import ErrorCode
from storage.db import Transactions
from storage.models import LabelRound, Player, PlayerKind, RetrievalTask, RoundStatus, ScoreEvent, TaskStatus, utcnow

# /top, /me and the streak's "this week" are the last 7 days.
LEADERBOARD_DAYS = 7


def listable():
    """Who may appear on a leaderboard or in a prize list: people (never a partner model), not
    banned, consent not withdrawn."""
    return [Player.kind == PlayerKind.HUMAN, col(Player.banned).is_(False), col(Player.consent_withdrawn_at).is_(None)]


def standing_in(session: Session, player: Player, since: datetime,
                until: datetime | None = None) -> tuple[int, int | None]:
    """The player's points in [since, until) in their language, and their place among the players
    a leaderboard lists (None without points)."""
    if player.language is None:
        return 0, None
    window = [ScoreEvent.language == player.language, ScoreEvent.created_at >= since]
    if until is not None:
        window.append(ScoreEvent.created_at < until)
    mine = int(session.exec(select(func.coalesce(func.sum(ScoreEvent.points), 0))
                            .where(ScoreEvent.player_id == player.id, *window)).one())
    if mine <= 0:
        return 0, None
    totals = (select(ScoreEvent.player_id, func.sum(ScoreEvent.points).label("total"))
              .join(Player, Player.id == ScoreEvent.player_id).where(*window, *listable())
              .group_by(ScoreEvent.player_id).subquery())
    above = session.exec(select(func.count()).select_from(totals).where(totals.c.total > mine)).one()
    return mine, above + 1


def ranked(session: Session, language: str, since: datetime | None, limit: int, *where, joins=()) -> list[LeaderboardRow]:
    """Players by their points of the ledger rows `where` selects (after `joins`, (entity, on) pairs),
    since `since` (None: all time), listable ones only, shown by nickname; ties by player id."""
    total = func.sum(ScoreEvent.points).label("total")
    statement = select(Player.id, Player.nickname, total).select_from(ScoreEvent)
    for entity, on in joins:
        statement = statement.join(entity, on)
    statement = statement.join(Player, col(Player.id) == ScoreEvent.player_id).where(*where, *listable())
    if since is not None:
        statement = statement.where(ScoreEvent.created_at >= since)
    rows = session.exec(statement.group_by(Player.id, Player.nickname)
                        .order_by(total.desc(), Player.id).limit(limit)).all()
    return [LeaderboardRow(i + 1, pid, nickname_of(pid, nickname, language), int(points))
            for i, (pid, nickname, points) in enumerate(rows)]


class Standings:
    LEADERBOARD_DAYS = LEADERBOARD_DAYS

    def __init__(self, db: Transactions, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    def player_stats(self, player_id: int) -> PlayerStats:
        """Points all time and in the last 7 days (the period /top shows), rank in that period among
        the players /top lists, accuracy and streak as a retriever."""
        with self.db.read() as session:
            player = session.get(Player, player_id)
            if player is None:
                raise GameError(ErrorCode.UNKNOWN_PLAYER)
            points = session.exec(select(func.coalesce(func.sum(ScoreEvent.points), 0))
                                  .where(ScoreEvent.player_id == player_id)).one()
            outcomes = session.exec(select(RetrievalTask.hit_rank).where(
                RetrievalTask.retriever_id == player_id, RetrievalTask.status == TaskStatus.ANSWERED)
                .order_by(col(RetrievalTask.answered_at).desc(), col(RetrievalTask.id).desc())).all()
            streak = 0
            for rank in outcomes:
                if rank is None:
                    break
                streak += 1
            hits = sum(1 for r in outcomes if r is not None)
            since = self.clock() - timedelta(days=LEADERBOARD_DAYS)
            period_points, period_rank = standing_in(session, player, since)
            return PlayerStats(player_id, int(points), period_rank, hits / len(outcomes) if outcomes else None,
                               len(outcomes), streak, period_points, period_rank)

    def tasks_finished(self, player_id: int) -> int:
        """Label rounds submitted and retrievals answered by the player (the screens' round number)."""
        with self.db.read() as session:
            rounds = session.exec(select(func.count()).select_from(LabelRound).where(
                LabelRound.player_id == player_id, LabelRound.status == RoundStatus.SUBMITTED)).one()
            answered = session.exec(select(func.count()).select_from(RetrievalTask).where(
                RetrievalTask.retriever_id == player_id, RetrievalTask.status == TaskStatus.ANSWERED)).one()
            return int(rounds) + int(answered)

    def leaderboard(self, language: str, since: datetime | None = None, limit: int = 10) -> list[LeaderboardRow]:
        """The top players by points, shown by nickname; banned players and those who withdrew
        their consent are never listed."""
        with self.db.read() as session:
            return ranked(session, language, since, limit, ScoreEvent.language == language)
