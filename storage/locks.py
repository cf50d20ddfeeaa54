"""A named lock held by at most one process at a time, whichever database the processes share.

PostgreSQL: a session-level advisory lock on a connection kept for the lock's lifetime (the server
releases it if the process dies). SQLite: a file lock beside the database file (the kernel releases
it if the process dies). Never waits: `acquired` is False when another process holds it.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout
from sqlalchemy import Engine, text

from storage.db import is_postgres


def _advisory_key(name: str) -> int:
    # A signed 64-bit key, the same in every process.
    return int.from_bytes(hashlib.sha256(f"sticktionary:{name}".encode()).digest()[:8], "big", signed=True)


def lock_path(engine: Engine, name: str) -> Path:
    database = engine.url.database
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    if not database or database == ":memory:":
        return Path(tempfile.gettempdir()) / f"sticktionary-{safe}.lock"
    return Path(f"{database}.{safe}.lock")


@contextmanager
def exclusive(engine: Engine, name: str) -> Iterator[bool]:
    if is_postgres(engine):
        with engine.connect() as connection:
            key = _advisory_key(name)
            acquired = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar_one()
            connection.commit()
            try:
                yield bool(acquired)
            finally:
                if acquired:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    connection.commit()
        return
    lock = FileLock(lock_path(engine, name))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
