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

from core.game.errors import GameError
from core.game.moderation import ModeratorPolicy
from core.game.standings import Standings, listable, standing_in
from core.nicknames import nickname_of
from core.outbox import Outbox
from core.vocabulary import LANGUAGES, ErrorCode, NoticeKind
from storage.db import insert_ignoring_conflicts
from storage.models import Player, PlaySession, Prize, PrizeKind, ScoreEvent
from storage.settings import Settings

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
    nickname: str  # what the moderators see; never the Telegram name
    pseudonym: str
    rank: int | None
    points: int
    sessions: int
    delivered_at: datetime | None
    telegram_user_id: int | None = None  # for the moderators' contact link (tg://user?id=…)


@dataclass(frozen=True)
class PrizeStanding:
    """What prizes there are and how close one player is to them, in the current prize period."""

    period: str
    period_start: datetime
    period_end: datetime
    top_n: int
    points: int  # the player's points in the period
    rank: int | None
    points_to_top: int | None  # points needed to reach place top_n (0 when already there; None: nobody there)
    session_min_tasks: int
    session_tasks: int  # tasks in the player's best session of the period


class Prizes:
    """Tallies, the moderators' prize list, and leaderboard posts, read from the standings and
    written to the outbox."""

    def __init__(self, settings: Settings, standings: Standings, outbox: Outbox, moderators: ModeratorPolicy) -> None:
        self.db = standings.db
        self.settings = settings
        self.standings = standings
        self.outbox = outbox
        self.moderators = moderators

    def clock(self) -> datetime:
        return self.standings.clock()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.settings.jobs.jobs_timezone)

    # ------------------------------------------------------------------ tallies
    def tally(self, start: datetime, end: datetime, period: str) -> dict[str, dict[str, int]]:
        """Top N by points earned in [start, end) per language, and participation rewards for
        sessions of at least `session_min_tasks` tasks started in it. Idempotent."""
        settings = self.settings
        counts: dict[str, dict[str, int]] = {}
        with self.db.write() as session:
            for language in LANGUAGES:
                total = func.sum(ScoreEvent.points).label("total")
                top = session.exec(
                    select(ScoreEvent.player_id, total)
                    .join(Player, Player.id == ScoreEvent.player_id)
                    .where(ScoreEvent.language == language, ScoreEvent.created_at >= start,
                           ScoreEvent.created_at < end, *listable())
                    .group_by(ScoreEvent.player_id)
                    .order_by(total.desc(), ScoreEvent.player_id)
                    .limit(settings.rules.prize_top_n)).all()
                sessions = session.exec(
                    select(PlaySession.player_id, func.count())
                    .join(Player, Player.id == PlaySession.player_id)
                    .where(PlaySession.language == language, PlaySession.task_count >= settings.rules.session_min_tasks,
                           PlaySession.started_at >= start, PlaySession.started_at < end, *listable())
                    .group_by(PlaySession.player_id).order_by(PlaySession.player_id)).all()
                common = dict(period=period, period_start=start, period_end=end, language=language,
                              created_at=self.clock())
                rows = [dict(common, kind=PrizeKind.TOP, player_id=pid, rank=i + 1, points=int(points), sessions=0)
                        for i, (pid, points) in enumerate(top)]
                rows += [dict(common, kind=PrizeKind.PARTICIPATION, player_id=pid, rank=None, points=0, sessions=n)
                         for pid, n in sessions]
                added = insert_ignoring_conflicts(session, Prize.__table__, rows,
                                                  ["kind", "period", "period_start", "language", "player_id"])
                counts[language] = {"top": len(top), "participation": len(sessions), "new": added}
                for row in rows:  # each winner hears what they won and how to claim it, once
                    self.outbox.enqueue(
                        session, f"prize:{row['kind']}:{period}:{start.isoformat()}:{language}:{row['player_id']}",
                        NoticeKind.PRIZE_WON, {"kind": str(row["kind"]), "period": period, "start": start.isoformat(),
                                      "end": end.isoformat(), "language": language, "rank": row["rank"],
                                      "points": row["points"], "sessions": row["sessions"]},
                        player_id=row["player_id"])
            self.outbox.enqueue(session, f"prizes:{period}:{start.isoformat()}", NoticeKind.PRIZES_TALLIED,
                              {"period": period, "start": start.isoformat(), "end": end.isoformat(),
                               "counts": counts})
        return counts

    # ------------------------------------------------------------------ moderators
    def pending(self, moderator_id: int, limit: int = 10, include_delivered: bool = False) -> list[PrizeView]:
        with self.db.read() as session:
            self.moderators.require(session, moderator_id)
            statement = select(Prize, Player).join(Player, Player.id == Prize.player_id).where(*listable())
            if not include_delivered:
                statement = statement.where(col(Prize.delivered_at).is_(None))
            rows = session.exec(statement.order_by(col(Prize.period_start).desc(), Prize.language, Prize.kind,
                                                   Prize.rank, Prize.id).limit(limit)).all()
            return [_prize_view(prize, player) for prize, player in rows]

    def mark_delivered(self, moderator_id: int, prize_id: int) -> PrizeView:
        with self.db.write() as session:
            moderator = self.moderators.require(session, moderator_id)
            prize = session.get(Prize, prize_id)
            if prize is None:
                raise GameError(ErrorCode.UNKNOWN_PRIZE)
            marked = session.execute(update(Prize).where(Prize.id == prize_id, col(Prize.delivered_at).is_(None))
                                     .values(delivered_at=self.clock(), delivered_by=moderator.id)).rowcount
            if not marked:
                raise GameError(ErrorCode.PRIZE_DELIVERED)
            session.flush()
            session.refresh(prize)
            return _prize_view(prize, session.get(Player, prize.player_id))

    # ------------------------------------------------------------------ players
    def standing(self, player_id: int, now: datetime | None = None) -> PrizeStanding:
        """The prizes of the current period and how close the player is to them."""
        now = now or self.clock()
        period = self.settings.rules.prize_period
        start = period_start(period, now, self.tz)
        end = period_start(period, start + timedelta(days=32 if period == "month" else 8 if period == "week" else 1,
                                                     hours=12), self.tz)
        with self.db.read() as session:
            player = session.get(Player, player_id)
            if player is None:
                raise GameError(ErrorCode.UNKNOWN_PLAYER)
            points, rank = standing_in(session, player, start, end)
            points_to_top = 0 if rank is not None and rank <= self.settings.rules.prize_top_n else None
            if points_to_top is None and player.language:
                total = func.sum(ScoreEvent.points).label("total")
                totals = session.exec(
                    select(total).join(Player, Player.id == ScoreEvent.player_id)
                    .where(ScoreEvent.language == player.language, ScoreEvent.created_at >= start,
                           ScoreEvent.created_at < end, ScoreEvent.player_id != player_id, *listable())
                    .group_by(ScoreEvent.player_id).order_by(total.desc())
                    .limit(self.settings.rules.prize_top_n)).all()
                if len(totals) < self.settings.rules.prize_top_n:
                    points_to_top = 0 if points > 0 else 1
                else:
                    points_to_top = int(totals[-1]) - points + 1
            best = session.exec(select(func.coalesce(func.max(PlaySession.task_count), 0)).where(
                PlaySession.player_id == player_id, PlaySession.started_at >= start,
                PlaySession.started_at < end)).one()
        return PrizeStanding(period, start, end, self.settings.rules.prize_top_n, points, rank, points_to_top,
                             self.settings.rules.session_min_tasks, int(best))

    # ------------------------------------------------------------------ leaderboard posts
    def post_leaderboards(self, period: str, now: datetime) -> dict[str, int]:
        """Write this period's leaderboard (so far) into the outbox for the configured chats and the
        players who opted in; the bots deliver it at Telegram's pace. Idempotent per period and day."""
        since = period_start(period, now, self.tz)
        posted: dict[str, int] = {}
        with self.db.write() as session:
            for language in LANGUAGES:
                board = self.standings.leaderboard(language, since=since, limit=self.settings.rules.leaderboard_size)
                payload = {"language": language, "period": period, "since": since.isoformat(),
                           "rows": [[r.rank, r.nickname, r.points] for r in board]}
                key = f"leaderboard:{period}:{language}:{now.astimezone(self.tz).date().isoformat()}"
                chats = self.settings.jobs.leaderboard_chats.get(language, [])
                for chat_id in chats:
                    self.outbox.enqueue(session, f"{key}:chat:{chat_id}", NoticeKind.LEADERBOARD, payload, chat_id=chat_id)
                players = session.exec(select(Player.id).where(
                    Player.language == language, col(Player.leaderboard_opt_in).is_(True),
                    col(Player.active).is_(True), *listable()).order_by(Player.id)).all()
                for player_id in players:
                    self.outbox.enqueue(session, f"{key}:player:{player_id}", NoticeKind.LEADERBOARD, payload,
                                      player_id=player_id)
                posted[language] = len(chats) + len(players)
        return posted


def _prize_view(prize: Prize, player: Player) -> PrizeView:
    return PrizeView(prize.id, prize.kind, prize.period, prize.period_start, prize.language, prize.player_id,
                     nickname_of(player.id, player.nickname, player.language), player.pseudonym, prize.rank,
                     prize.points, prize.sessions, prize.delivered_at, player.telegram_user_id)


__all__ = ["Prizes", "PrizeView", "PrizeStanding", "PERIODS", "period_start", "last_complete_period"]
