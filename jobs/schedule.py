"""APScheduler 3.11 wiring: one cron trigger per job from settings, each firing through run_once.

Every process that runs a scheduler (`sticktionary jobs start`, or the bot process with
STICKTIONARY_JOBS_IN_BOT_PROCESS=true) fires every job; run_once lets exactly one of them do it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Engine

from jobs.runner import JobOutcome, run_once, unfinished_slots
from jobs.tasks import JOBS, JobContext
from storage.models import utcnow
from storage.settings import Settings

log = logging.getLogger("sticktionary.jobs")

# How late a firing may start (a busy or restarted process) and still count for its slot.
MISFIRE_GRACE = timedelta(minutes=15)


class ScheduleError(ValueError):
    pass


def time_zone(settings: Settings) -> ZoneInfo:
    try:
        return ZoneInfo(settings.jobs.jobs_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"STICKTIONARY_JOBS_TIMEZONE={settings.jobs.jobs_timezone!r} is not a time zone; "
                            "use an IANA name such as UTC or Asia/Singapore") from None


def parse_schedule(expression: str, tz: ZoneInfo, setting: str = "schedule") -> CronTrigger:
    """A cron expression: `minute hour day month weekday`, or with seconds first (six fields).
    Weekdays must be names (mon … sun): crontab counts 0 as Sunday, APScheduler 3 as Monday."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ScheduleError(f"{setting}={expression!r}: expected 5 cron fields (minute hour day month weekday) "
                            "or 6 (with seconds first)")
    if re.search(r"\d", fields[-1]):
        raise ScheduleError(f"{setting}={expression!r}: write weekdays as names (mon, tue, … sun, or mon-fri)")
    second = fields.pop(0) if len(fields) == 6 else "0"
    minute, hour, day, month, day_of_week = fields
    try:
        return CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week,
                           timezone=tz)
    except ValueError as error:
        raise ScheduleError(f"{setting}={expression!r}: {error}") from None


def check_schedules(settings: Settings) -> dict[str, CronTrigger]:
    tz = time_zone(settings)
    return {name: parse_schedule(spec.schedule(settings), tz, f"STICKTIONARY_{spec.schedule_setting.upper()}")
            for name, spec in JOBS.items()}


def latest_fire_time(trigger: CronTrigger, now: datetime, window: timedelta = MISFIRE_GRACE) -> datetime | None:
    """The newest scheduled time at or before `now` (within `window`): the slot this firing is for,
    the same in every process whatever its timer's delay."""
    latest = None
    fire = trigger.get_next_fire_time(None, now - window)
    while fire is not None and fire <= now:
        latest = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
    return latest


def fire(context: JobContext, name: str, trigger: CronTrigger) -> JobOutcome | None:
    now = utcnow()
    slot = latest_fire_time(trigger, now)
    if slot is None:  # fired later than the grace period allows: the next slot will do
        log.warning("job %s fired at %s, too late for any slot", name, now.isoformat())
        return None
    return run_job(context, name, slot)


def run_job(context: JobContext, name: str, slot: datetime) -> JobOutcome:
    spec = JOBS[name]
    outcome = run_once(context.db, name, slot, lambda: spec.run(context, slot))
    log.info("job %s slot %s: %s %s", name, slot.isoformat(), outcome.status,
             outcome.result if outcome.result is not None else outcome.error or "")
    return outcome


def retry_unfinished(context: JobContext, only: Iterable[str] | None = None) -> list[JobOutcome]:
    """Run again the recent slots that failed or whose runner died (jobs/runner.py says which)."""
    names = set(only or JOBS)
    return [run_job(context, name, slot) for name, slot in unfinished_slots(context.db) if name in names]


def add_jobs(scheduler: BaseScheduler, db: Engine, settings: Settings, only: Iterable[str] | None = None) -> None:
    triggers = check_schedules(settings)
    context = JobContext(db, settings)
    # Every minute, and once at start-up: slots that failed or were cut short by a crash.
    scheduler.add_job(retry_unfinished, "interval", minutes=1, args=(context, only), id="retry-unfinished",
                      name="retry-unfinished", max_instances=1, coalesce=True, next_run_time=utcnow())
    for name in only or JOBS:
        if name not in JOBS:
            raise ScheduleError(f"unknown job {name!r}; jobs: {', '.join(JOBS)}")
        scheduler.add_job(fire, triggers[name], args=(context, name, triggers[name]), id=name, name=name,
                          max_instances=1, coalesce=True, misfire_grace_time=int(MISFIRE_GRACE.total_seconds()))
