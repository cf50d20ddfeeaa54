"""The scheduled jobs. Each takes the moment it was scheduled for, so tests drive them with any clock."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from core.exports import run_export
from core.game import Game, game_outbox
from core.game.expiry import Expiry
from core.game.moderation import ModeratorPolicy
from core.game.prizes import Prizes, last_complete_period
from core.game.standings import Standings
from core.retention import RetentionRules, prune
from jobs.runner import job_lock
from storage.db import Database
from storage.export_files import apply_retention, remove_partials
from storage.settings import Settings


@dataclass(frozen=True)
class JobContext:
    db: Engine
    settings: Settings

    def prizes(self, now: datetime) -> Prizes:
        """Prizes and leaderboard posts as of `now`: they read the standings and write the outbox."""
        clock = lambda: now  # noqa: E731
        db = Database(self.db)
        return Prizes(self.settings, Standings(db, clock), game_outbox(db, self.settings, clock), ModeratorPolicy())

    def expiry(self, now: datetime) -> Expiry:
        clock = lambda: now  # noqa: E731
        db = Database(self.db)
        return Expiry(db, self.settings, clock, game_outbox(db, self.settings, clock))


def leaderboard_daily(context: JobContext, now: datetime) -> dict:
    return {"posted": context.prizes(now).post_leaderboards("day", now)}


def leaderboard_weekly(context: JobContext, now: datetime) -> dict:
    return {"posted": context.prizes(now).post_leaderboards("week", now)}


def prizes(context: JobContext, now: datetime) -> dict:
    period = context.settings.rules.prize_period
    start, end = last_complete_period(period, now, ZoneInfo(context.settings.jobs.jobs_timezone))
    counts = context.prizes(now).tally(start, end, period)
    return {"period": period, "start": start.isoformat(), "end": end.isoformat(), "counts": counts}


def export(context: JobContext, now: datetime) -> dict:
    summary = run_export(context.db, context.settings, now=now)
    return {"version": summary.version, "queries": summary.queries, "stickers": summary.stickers,
            "seconds": round(summary.seconds, 2)}


def expiry(context: JobContext, now: datetime) -> dict:
    return context.expiry(now).expire_abandoned()


# One game per database for the partners job: its search index is loaded once and then follows the
# change log, rather than being rebuilt every minute.
_partner_games: weakref.WeakKeyDictionary[Engine, Game] = weakref.WeakKeyDictionary()


def partners(context: JobContext, now: datetime) -> dict:
    """Rounds that waited `partner_after` seconds for a person get a partner's answer (the bots'
    partner seat does the same every few seconds; each round is answered once whoever runs)."""
    game = _partner_games.get(context.db)
    if game is None:
        game = _partner_games[context.db] = Game.open(context.db, context.settings)
    return {"answered": game.partners.answer_waiting(limit=500)}


def export_retention(context: JobContext, now: datetime) -> dict:
    root = context.settings.exports.export_dir
    if not root.is_dir():
        return {"removed": [], "partials": []}
    removed = apply_retention(root, context.settings.exports.export_keep)
    # A partial folder is a killed export's leftover only while no export runs (in any process).
    with job_lock(context.db, "export") as no_export_running:
        partials = remove_partials(root) if no_export_running else []
    return {"removed": removed, "partials": partials}


def retention(context: JobContext, now: datetime) -> dict:
    return prune(context.db, RetentionRules.from_settings(context.settings), now)


@dataclass(frozen=True)
class JobSpec:
    name: str
    schedule_setting: str  # the JobSettings field holding its cron expression (STICKTIONARY_<FIELD>)
    run: Callable[[JobContext, datetime], dict]
    description: str

    def schedule(self, settings: Settings) -> str:
        return getattr(settings.jobs, self.schedule_setting)


JOBS: dict[str, JobSpec] = {spec.name: spec for spec in (
    JobSpec("leaderboard_daily", "schedule_leaderboard_daily", leaderboard_daily,
            "today's leaderboard per language, to the configured chats and opted-in players"),
    JobSpec("leaderboard_weekly", "schedule_leaderboard_weekly", leaderboard_weekly,
            "this week's leaderboard per language, likewise"),
    JobSpec("prizes", "schedule_prizes", prizes,
            "tally the last complete prize period (top N and participation) and tell moderators"),
    JobSpec("export", "schedule_export", export, "the research export (a new versioned folder)"),
    JobSpec("expiry", "schedule_expiry", expiry, "close rounds and tasks left open too long"),
    JobSpec("export_retention", "schedule_export_retention", export_retention,
            "keep only the newest export_keep exports"),
    JobSpec("partners", "schedule_partners", partners,
            "partner bots answer the rounds no person has taken for partner_after seconds"),
    JobSpec("retention", "schedule_retention", retention,
            "delete handled updates, sent messages and search-log rows older than the retention settings"),
)}

__all__ = ["JOBS", "JobSpec", "JobContext"]
