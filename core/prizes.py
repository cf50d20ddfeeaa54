"""Prizes and leaderboard posts: what the scheduled jobs decide, written to the database and outbox.

Periods are calendar days, ISO weeks (Monday first) or months in the operator's time zone. A tally
covers one complete period and can run any number of times: prizes are unique per (kind, period,
start, language, player), and the moderators' notice has a dedupe key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, update
from sqlmodel import col, select

from core.engine import LANGUAGES, Game, GameError
from storage.db import insert_ignoring_conflicts, read_session, session_scope
from storage.models import Player, PlaySession, Prize, PrizeKind, ScoreEvent

PERIODS = ("day", "week", "month")


def period_start(period: str, moment: datetime, tz: ZoneInfo) -> datetime:
    """Start (as an aware time in tz) of the period that contains `moment`."""
    local = moment.astimezone(tz)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start = day
    elif period == "week":
        start = day - timedelta(days=local.weekday())
    elif period == "month":
        start = day.replace(day=1)
    else:
        raise ValueError(f"unknown period {period!r}; use one of {PERIODS}")
    # Re-localise: across a DST change the wall-clock midnight has another offset than `moment`.
    return start.replace(tzinfo=None).replace(tzinfo=tz)


def last_complete_period(period: str, moment: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    end = period_start(period, moment, tz)
    start = period_start(period, end - timedelta(seconds=1), tz)
    return start, end


@dataclass(frozen=True)
class PrizeView:
    id: int
    kind: str
    period: str
    period_start: datetime
    language: str
    player_id: int
    display_name: str
    pseudonym: str
    rank: int | None
    points: int
    sessions: int
    delivered_at: datetime | None


class Prizes:
    """Tallies, the moderators' prize list, and leaderboard posts, on top of the game's database."""

    def __init__(self, game: Game) -> None:
        self.game = game
        self.db = game.db
        self.settings = game.settings

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.settings.jobs_timezone)

    # ------------------------------------------------------------------ tallies
    def tally(self, start: datetime, end: datetime, period: str) -> dict[str, dict[str, int]]:
        """Top N by points earned in [start, end) per language, and participation rewards for
        sessions of at least `session_min_tasks` tasks started in it. Idempotent."""
        settings = self.settings
        counts: dict[str, dict[str, int]] = {}
        with session_scope(self.db) as session:
            for language in LANGUAGES:
                total = func.sum(ScoreEvent.points).label("total")
                top = session.exec(
                    select(ScoreEvent.player_id, total)
                    .join(Player, Player.id == ScoreEvent.player_id)
                    .where(ScoreEvent.language == language, ScoreEvent.created_at >= start,
                           ScoreEvent.created_at < end, col(Player.banned).is_(False))
                    .group_by(ScoreEvent.player_id)
                    .order_by(total.desc(), ScoreEvent.player_id)
                    .limit(settings.prize_top_n)).all()
                sessions = session.exec(
                    select(PlaySession.player_id, func.count())
                    .join(Player, Player.id == PlaySession.player_id)
                    .where(PlaySession.language == language, PlaySession.task_count >= settings.session_min_tasks,
                           PlaySession.started_at >= start, PlaySession.started_at < end,
                           col(Player.banned).is_(False))
                    .group_by(PlaySession.player_id).order_by(PlaySession.player_id)).all()
                common = dict(period=period, period_start=start, period_end=end, language=language,
                              created_at=self.game.clock())
                rows = [dict(common, kind=PrizeKind.TOP, player_id=pid, rank=i + 1, points=int(points), sessions=0)
                        for i, (pid, points) in enumerate(top)]
                rows += [dict(common, kind=PrizeKind.PARTICIPATION, player_id=pid, rank=None, points=0, sessions=n)
                         for pid, n in sessions]
                added = insert_ignoring_conflicts(session, Prize.__table__, rows,
                                                  ["kind", "period", "period_start", "language", "player_id"])
                counts[language] = {"top": len(top), "participation": len(sessions), "new": added}
            self.game.notify(session, f"prizes:{period}:{start.isoformat()}", "prizes_tallied",
                              {"period": period, "start": start.isoformat(), "end": end.isoformat(),
                               "counts": counts})
        return counts

    # ------------------------------------------------------------------ moderators
    def pending(self, moderator_id: int, limit: int = 10, include_delivered: bool = False) -> list[PrizeView]:
        with read_session(self.db) as session:
            self.game.require_moderator(session, moderator_id)
            statement = select(Prize, Player).join(Player, Player.id == Prize.player_id)
            if not include_delivered:
                statement = statement.where(col(Prize.delivered_at).is_(None))
            rows = session.exec(statement.order_by(col(Prize.period_start).desc(), Prize.language, Prize.kind,
                                                   Prize.rank, Prize.id).limit(limit)).all()
            return [_prize_view(prize, player) for prize, player in rows]

    def mark_delivered(self, moderator_id: int, prize_id: int) -> PrizeView:
        with session_scope(self.db) as session:
            moderator = self.game.require_moderator(session, moderator_id)
            prize = session.get(Prize, prize_id)
            if prize is None:
                raise GameError("unknown_prize")
            marked = session.execute(update(Prize).where(Prize.id == prize_id, col(Prize.delivered_at).is_(None))
                                     .values(delivered_at=self.game.clock(), delivered_by=moderator.id)).rowcount
            if not marked:
                raise GameError("prize_delivered")
            session.flush()
            session.refresh(prize)
            return _prize_view(prize, session.get(Player, prize.player_id))

    # ------------------------------------------------------------------ leaderboard posts
    def post_leaderboards(self, period: str, now: datetime) -> dict[str, int]:
        """Write this period's leaderboard (so far) into the outbox for the configured chats and the
        players who opted in; the bots deliver it at Telegram's pace. Idempotent per period and day."""
        since = period_start(period, now, self.tz)
        posted: dict[str, int] = {}
        with session_scope(self.db) as session:
            for language in LANGUAGES:
                board = self.game.leaderboard(language, since=since, limit=self.settings.leaderboard_size)
                payload = {"language": language, "period": period, "since": since.isoformat(),
                           "rows": [[r.rank, r.display_name, r.points] for r in board]}
                key = f"leaderboard:{period}:{language}:{now.astimezone(self.tz).date().isoformat()}"
                chats = self.settings.leaderboard_chats.get(language, [])
                for chat_id in chats:
                    self.game.notify(session, f"{key}:chat:{chat_id}", "leaderboard", payload, chat_id=chat_id)
                players = session.exec(select(Player.id).where(
                    Player.language == language, col(Player.leaderboard_opt_in).is_(True),
                    col(Player.active).is_(True), col(Player.banned).is_(False),
                    col(Player.consent_withdrawn_at).is_(None)).order_by(Player.id)).all()
                for player_id in players:
                    self.game.notify(session, f"{key}:player:{player_id}", "leaderboard", payload,
                                      player_id=player_id)
                posted[language] = len(chats) + len(players)
        return posted


def _prize_view(prize: Prize, player: Player) -> PrizeView:
    return PrizeView(prize.id, prize.kind, prize.period, prize.period_start, prize.language, prize.player_id,
                     player.display_name, player.pseudonym, prize.rank, prize.points, prize.sessions,
                     prize.delivered_at)


__all__ = ["Prizes", "PrizeView", "PERIODS", "period_start", "last_complete_period"]
