"""Running one firing of a job exactly once, however many schedulers are up.

Two guards: a named lock (storage.locks: a PostgreSQL advisory lock or a file lock on SQLite) so two
runs of one job never overlap, and a JobRun row unique per (job, scheduled time) so a process whose
timer fires a moment after another finished the same slot finds it taken and stands down.

A slot that failed, or whose runner died (its row still says "running" while nobody holds the
job's lock: a dead process holds no lock), is run again by `retry_unfinished`, up to
MAX_ATTEMPTS times, a while after the last try.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, or_, update
from sqlmodel import Session, col, select

from core import metrics
from storage.db import insert_ignoring_conflicts, session_scope
from storage.locks import exclusive
from storage.models import JobRun, utcnow

log = logging.getLogger(__name__)

RUNNER = f"{socket.gethostname()}:{os.getpid()}"
MAX_ATTEMPTS = 3
RETRY_AFTER = timedelta(minutes=1)  # after a failure, before the slot is tried again
RETRY_WINDOW = timedelta(days=1)  # older unfinished slots are left for a person to look at


@dataclass(frozen=True)
class JobOutcome:
    job: str
    scheduled_for: datetime
    status: str  # done, failed, locked (another run is in progress), taken (this slot already ran)
    result: dict | None = None
    error: str | None = None

    @property
    def ran(self) -> bool:
        return self.status in ("done", "failed")


def job_lock(db: Engine, job: str):
    """The lock a job holds while it runs (`export now` and retention take the export's too)."""
    return exclusive(db, f"job:{job}")


def run_once(db: Engine, job: str, scheduled_for: datetime, work: Callable[[], dict]) -> JobOutcome:
    started = time.monotonic()
    outcome = _run_once(db, job, scheduled_for, work)
    metrics.job_ran(job, outcome.status, time.monotonic() - started)
    return outcome


def _run_once(db: Engine, job: str, scheduled_for: datetime, work: Callable[[], dict]) -> JobOutcome:
    with job_lock(db, job) as acquired:
        if not acquired:
            return JobOutcome(job, scheduled_for, "locked")
        if not _claim(db, job, scheduled_for):
            return JobOutcome(job, scheduled_for, "taken")
        try:
            result = work() or {}
        except Exception as error:  # noqa: BLE001 - recorded and reported; the scheduler goes on
            log.exception("job %s (%s) failed", job, scheduled_for.isoformat())
            _finish(db, job, scheduled_for, "failed", {}, "".join(traceback.format_exception(error))[-2000:])
            return JobOutcome(job, scheduled_for, "failed", error=f"{type(error).__name__}: {error}")
        _finish(db, job, scheduled_for, "done", result, None)
        return JobOutcome(job, scheduled_for, "done", result)


def _claim(db: Engine, job: str, scheduled_for: datetime) -> bool:
    """The slot for this runner: new, or one that failed or was left "running" by a dead runner
    (the caller holds the job's lock, so no live runner has it), while attempts remain."""
    now = utcnow()
    with session_scope(db) as session:
        if insert_ignoring_conflicts(session, JobRun.__table__, [dict(
                job=job, scheduled_for=scheduled_for, runner=RUNNER, status="running", started_at=now, result={},
                attempts=1)], ["job", "scheduled_for"]):
            return True
        return session.execute(
            update(JobRun).where(JobRun.job == job, JobRun.scheduled_for == scheduled_for,
                                 col(JobRun.status).in_(("running", "failed")), JobRun.attempts < MAX_ATTEMPTS)
            .values(status="running", runner=RUNNER, started_at=now, finished_at=None, error=None,
                    attempts=JobRun.attempts + 1)
        ).rowcount == 1


def unfinished_slots(db: Engine, now: datetime | None = None) -> list[tuple[str, datetime]]:
    """Recent slots worth another try: failed a while ago, or left running (whether their runner
    is alive is for run_once's lock to say)."""
    now = now or utcnow()
    with Session(db) as session:
        rows = session.exec(select(JobRun.job, JobRun.scheduled_for).where(
            JobRun.attempts < MAX_ATTEMPTS, JobRun.scheduled_for >= now - RETRY_WINDOW,
            or_(JobRun.status == "running",
                and_(JobRun.status == "failed", JobRun.finished_at <= now - RETRY_AFTER)))
            .order_by(JobRun.scheduled_for)).all()
    return [(job, slot) for job, slot in rows]


def _finish(db: Engine, job: str, scheduled_for: datetime, status: str, result: dict, error: str | None) -> None:
    with session_scope(db) as session:
        session.execute(update(JobRun).where(JobRun.job == job, JobRun.scheduled_for == scheduled_for,
                                             JobRun.runner == RUNNER, JobRun.status == "running")
                        .values(status=status, finished_at=utcnow(), result=result, error=error))
