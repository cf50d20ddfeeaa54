"""What the `sticktionary` command's groups share: the database, the language option, printing figures
and logging to stderr."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from core.vocabulary import LANGUAGES
from storage.settings import get_settings

Language = Annotated[str, typer.Option("--lang", help="en or zh")]


def open_database(upgrade_first: bool = True):
    from storage.db import make_engine
    from storage.migrate import upgrade

    engine = make_engine(get_settings().storage.database_url)
    if upgrade_first:
        upgrade(engine)
    return engine


def check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise typer.BadParameter("the game has two languages: en or zh", param_hint="--lang")
    return language


def log_to_stderr(settings=None) -> None:
    from sticktionary.logs import setup

    settings = settings or get_settings()
    setup(secrets=settings.secrets(), log_format=settings.health.log_format)


def print_result(result: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result))
    else:
        for key, value in result.items():
            typer.echo(f"{key:>24}: {value}")
