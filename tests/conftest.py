"""Fixtures: a real SQLite file and a real PostgreSQL database, both built by the migrations.

Every test that takes `db` runs on both. PostgreSQL is the server on 127.0.0.1:5432 (trust auth):
one throwaway database per test run, created here and dropped at the end. Where no server
answers, the PostgreSQL half is skipped — except under CI, where that is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlmodel import SQLModel

from offline.databases import throwaway_postgres_database
from storage.db import make_engine
from storage.migrate import upgrade
from storage.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# The first 200 stickers of each language of the released StickerQueries (MIT; see its PROVENANCE.md).
REAL_SAMPLES = ROOT / "tests" / "data" / "sticker-queries"
# A fixed key with the entropy exports require (core.pseudonyms), so ids are the same on every run.
TEST_PSEUDONYM_KEY = "wFgcIhftSFEUNJSNWmerb7PCZqFiFPsbkDiwhrXC9t9A5fBkaXJ8zvppySubABBs"
POSTGRES_ADMIN = os.environ.get("STICKTIONARY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _postgres_available() -> str | None:
    try:
        with psycopg.connect(POSTGRES_ADMIN, connect_timeout=3):
            return None
    except Exception as error:  # noqa: BLE001 - any failure means "no server"
        return str(error)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url():
    problem = _postgres_available()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is required under CI: {problem}")
        pytest.skip(f"no PostgreSQL server: {problem}")
    with throwaway_postgres_database(POSTGRES_ADMIN, "sticktionary_test") as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path, sqlite_template):
    if request.param == "sqlite":
        path = tmp_path / "game.sqlite3"
        shutil.copy(sqlite_template, path)
        engine = make_engine(f"sqlite:///{path}")
    else:
        engine = make_engine(request.getfixturevalue("postgres_url"))
        tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
        with engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield engine
    engine.dispose()


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(storage={"database_url": "sqlite://", "sticker_root": tmp_path / "stickers"},
                    exports={"export_dir": tmp_path / "exports", "export_semantic": False}, rules={"gold_rate": 0.0},
                    privacy={"pseudonym_key": TEST_PSEUDONYM_KEY}, _env_file=None)


@pytest.fixture
def game_db(tmp_path, sqlite_template):
    """A game database (the demo pack, migrated) for a bot under test, as a SQLite file."""
    from tests.bots_world import prepare_database

    db = prepare_database(tmp_path, sqlite_template)
    yield db
    db.dispose()
