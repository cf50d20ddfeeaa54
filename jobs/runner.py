"""Running one firing of a job exactly once, however many schedulers are up.

Two guards: a named lock (storage.locks: a PostgreSQL advisory lock or a file lock on SQLite) so two
runs of one job never overlap, and a JobRun row unique per (job, scheduled time) so a process whose
timer fires a moment after another finished the same slot finds it taken and stands down.
"""

from __future__ import annotations

import logging
import os
import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, update

from storage.db import insert_ignoring_conflicts, session_scope
from storage.locks import exclusive
from storage.models import JobRun, utcnow

log = logging.getLogger(__name__)

RUNNER = f"{socket.gethostname()}:{os.getpid()}"


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
    with job_lock(db, job) as acquired:
        if not acquired:
            return JobOutcome(job, scheduled_for, "locked")
        with session_scope(db) as session:
            claimed = insert_ignoring_conflicts(session, JobRun.__table__, [dict(
                job=job, scheduled_for=scheduled_for, runner=RUNNER, status="running", started_at=utcnow(),
                result={})], ["job", "scheduled_for"])
        if not claimed:
            return JobOutcome(job, scheduled_for, "taken")
        try:
            result = work() or {}
        except Exception as error:  # noqa: BLE001 - recorded and reported; the scheduler goes on
            log.exception("job %s (%s) failed", job, scheduled_for.isoformat())
            _finish(db, job, scheduled_for, "failed", {}, "".join(traceback.format_exception(error))[-2000:])
            return JobOutcome(job, scheduled_for, "failed", error=f"{type(error).__name__}: {error}")
        _finish(db, job, scheduled_for, "done", result, None)
        return JobOutcome(job, scheduled_for, "done", result)


def _finish(db: Engine, job: str, scheduled_for: datetime, status: str, result: dict, error: str | None) -> None:
    with session_scope(db) as session:
        session.execute(update(JobRun).where(JobRun.job == job, JobRun.scheduled_for == scheduled_for)
                        .values(status=status, finished_at=utcnow(), result=result, error=error))
