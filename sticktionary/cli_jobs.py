"""`sticktionary jobs`: the scheduler, one job now, and the schedules."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from sticktionary.cli_common import log_to_stderr, open_database
from storage.settings import get_settings

jobs_app = typer.Typer(help="Scheduled jobs: leaderboards, prizes, the nightly export, expiry, retention. "
                            "Without a subcommand: run the scheduler (as `jobs start`).",
                       invoke_without_command=True)


def make_scheduler(kind, settings, only: list[str] | None = None):
    """An APScheduler scheduler of `kind` with the jobs added; a bad schedule stops the command."""
    from jobs.schedule import ScheduleError, add_jobs, time_zone

    try:
        scheduler = kind(timezone=time_zone(settings))
        add_jobs(scheduler, open_database(), settings, only)
    except ScheduleError as error:
        typer.echo(f"cannot start: {error}", err=True)
        raise typer.Exit(2) from None
    return scheduler


JobName = Annotated[str, typer.Argument(help="leaderboard_daily, leaderboard_weekly, prizes, export, expiry, "
                                             "export_retention or retention")]


def _parse_moment(value: str | None):
    from datetime import UTC, datetime

    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("an ISO time, e.g. 2026-11-30T03:00:00+00:00", param_hint="--at") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@jobs_app.callback()
def jobs_main(context: typer.Context) -> None:
    if context.invoked_subcommand is None:
        jobs_start(only=None)


@jobs_app.command("start")
def jobs_start(only: Annotated[list[str] | None, typer.Option(help="run only these jobs (repeatable)")] = None
               ) -> None:
    """Run the scheduler until interrupted. Several processes may run it: each firing runs once."""
    import logging

    from apscheduler.schedulers.blocking import BlockingScheduler

    log_to_stderr()
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    settings = get_settings()
    scheduler = make_scheduler(BlockingScheduler, settings, only)
    for job in scheduler.get_jobs():
        typer.echo(f"{job.id:>20}: {job.trigger}")
    stop_listener = _jobs_health(settings) if settings.health.health_listen else None
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        if stop_listener is not None:
            stop_listener()


def _jobs_health(settings):
    """/healthz, /readyz (the database) and /metrics (job runs) of `jobs start` on STICKTIONARY_HEALTH_LISTEN."""
    from core.health import Health, database_check, serve_in_thread

    try:
        return serve_in_thread(Health("jobs", {"database": database_check(open_database(upgrade_first=False))}),
                               settings.health.health_listen)
    except OSError as error:
        typer.echo(f"cannot start: cannot listen on STICKTIONARY_HEALTH_LISTEN={settings.health.health_listen} "
                   f"({error.strerror})", err=True)
        raise typer.Exit(2) from None


@jobs_app.command("run")
def jobs_run(name: JobName, at: Annotated[str | None, typer.Option(
        help="the scheduled time this run stands for (ISO); default now")] = None) -> None:
    """Run one job now, through the same exactly-once guard as the scheduler."""
    from jobs.schedule import run_job
    from jobs.tasks import JOBS, JobContext

    if name not in JOBS:
        raise typer.BadParameter(f"choose one of {', '.join(JOBS)}", param_hint="NAME")
    outcome = run_job(JobContext(open_database(), get_settings()), name, _parse_moment(at))
    typer.echo(json.dumps({"job": name, "scheduled_for": outcome.scheduled_for.isoformat(), "status": outcome.status,
                           "result": outcome.result, "error": outcome.error}, ensure_ascii=False))
    if outcome.status == "failed":
        raise typer.Exit(1)


@jobs_app.command("list")
def jobs_list() -> None:
    """Each job's schedule, next firing and last run."""
    from sqlmodel import Session, col, select

    from jobs.schedule import ScheduleError, check_schedules
    from jobs.tasks import JOBS
    from storage.models import JobRun, utcnow

    settings = get_settings()
    try:
        triggers = check_schedules(settings)
    except ScheduleError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    engine = open_database()
    now = utcnow()
    with Session(engine) as session:
        for name, spec in JOBS.items():
            last = session.exec(select(JobRun).where(JobRun.job == name)
                                .order_by(col(JobRun.scheduled_for).desc()).limit(1)).first()
            following = triggers[name].get_next_fire_time(None, now)
            typer.echo(f"{name:>20}  {spec.schedule(settings):<16} next {following.isoformat() if following else '–'}"
                       f"  last {last.scheduled_for.isoformat() + ' ' + last.status if last else '–'}")
            typer.echo(f"{'':>20}  {spec.description}")
