"""Throwaway databases for tests and benchmarks (never for production data)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def throwaway_postgres_database(admin_url: str, prefix: str = "sticktionary_tmp") -> Iterator[str]:
    """A fresh, empty database on a PostgreSQL server, dropped afterwards; yields its SQLAlchemy URL."""
    import uuid

    import psycopg

    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{plain.rsplit('/', 1)[0]}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        with psycopg.connect(plain, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
