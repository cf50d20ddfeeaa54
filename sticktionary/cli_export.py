"""`sticktionary export`: make a research export, list them, serve them, pull them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sticktionary.cli_common import log_to_stderr, open_database
from storage.settings import get_settings

export_app = typer.Typer(help="The research export: make one, serve them, pull them.", no_args_is_help=True)


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
        settings = settings.replace(exports={"export_without_seeds": True})
    try:
        check_export_settings(settings)
    except ExportRefused as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    engine = open_database()
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

    root = get_settings().exports.export_dir
    latest = latest_export(root)
    for version in list_exports(root):
        manifest = read_manifest(root / version)
        typer.echo(f"{version}  {manifest.get('queries', '?')} queries{'  (latest)' if version == latest else ''}")


@export_app.command("serve")
def export_serve(listen: Annotated[str | None, typer.Option(help="host:port (default STICKTIONARY_PULL_LISTEN)")]
                 = None) -> None:
    """Serve the exports to researchers over HTTP (bearer tokens from STICKTIONARY_PULL_TOKENS)."""

    from jobs.pull_server import serve

    log_to_stderr()
    settings = get_settings()
    tokens = [t.get_secret_value() for t in settings.exports.pull_tokens]
    if not tokens:
        typer.echo('cannot start: no researcher tokens; set STICKTIONARY_PULL_TOKENS, e.g. ["a-long-random-token"]',
                   err=True)
        raise typer.Exit(2)
    host, _, port = (listen or settings.exports.pull_listen).rpartition(":")
    serve(settings.exports.export_dir, tokens, host or "0.0.0.0", int(port))


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
