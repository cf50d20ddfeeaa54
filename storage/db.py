"""Engines and sessions: SQLite (WAL, busy timeout, serialized writers) or PostgreSQL by URL."""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session


def make_engine(url: str, *, echo: bool = False) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30, "check_same_thread": False})
        _serialize_sqlite_writers(engine)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False))
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _serialize_sqlite_writers(engine: Engine) -> None:
    """SQLite: WAL for concurrent readers, and BEGIN IMMEDIATE for write transactions so that one
    that reads and then writes never dies with 'database is locked' halfway (SQLAlchemy's pysqlite
    recipe)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # let us issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # Writers (session_scope) take the write lock up front; readers stay deferred, so under
        # WAL they never wait for a writer.
        immediate = connection.get_execution_options().get("sqlite_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


_sqlite_writers: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_sqlite_writers_guard = threading.Lock()


def _writer_lock(engine: Engine) -> threading.RLock:
    with _sqlite_writers_guard:
        lock = _sqlite_writers.get(engine)
        if lock is None:
            lock = _sqlite_writers[engine] = threading.RLock()
        return lock


# The transaction a unit of work opened on this thread, if any (see unit_of_work).
_ambient = threading.local()


def _ambient_session(engine: Engine) -> Session | None:
    session = getattr(_ambient, "session", None)
    return session if session is not None and session.get_bind() is engine else None


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One write transaction: commit on success, roll back on any error.

    Inside a unit_of_work it is a SAVEPOINT of that transaction instead: a step the rules refuse
    undoes only itself, and nothing is committed until the whole unit is.

    On SQLite the writers of this process also queue on a lock of their own: SQLite's busy
    handler polls with growing sleeps (up to 100 ms), so waiting there makes long tails, while a
    lock hands over the moment the previous writer commits. Other processes still meet the
    database's own lock and busy timeout.
    """
    outer = _ambient_session(engine)
    if outer is not None:
        with outer.begin_nested():
            yield outer
        return
    sqlite = engine.dialect.name == "sqlite"
    lock = _writer_lock(engine) if sqlite else contextlib.nullcontext()
    with lock, Session(engine, expire_on_commit=False) as session:
        if sqlite:
            session.connection(execution_options={"sqlite_immediate": True})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session for reading: the unit of work's, when one is open on this thread (so a read sees
    what the unit wrote so far), else a fresh one."""
    outer = _ambient_session(engine)
    if outer is not None:
        yield outer
        return
    with Session(engine, expire_on_commit=False) as session:
        yield session


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Session]:
    """One transaction around many steps: every session_scope and read_session on this thread joins
    it until it ends. The bots handle an update this way, so the update is marked handled in the
    same transaction as everything it changed."""
    if _ambient_session(engine) is not None:
        raise RuntimeError("a unit of work is already open on this thread")
    with session_scope(engine) as session:
        _ambient.session = session
        try:
            yield session
        finally:
            _ambient.session = None


RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected (PostgreSQL)


def is_retryable(error: BaseException) -> bool:
    """A transaction the database aborted to resolve a conflict: running it again is safe."""
    original = getattr(error, "orig", None)
    return getattr(original, "sqlstate", None) in RETRYABLE_SQLSTATES


def insert_ignoring_conflicts(session: Session, table, rows: list[dict], conflict_columns: list[str]) -> int:
    """INSERT … ON CONFLICT DO NOTHING on SQLite and PostgreSQL; returns how many rows went in."""
    return len(insert_new_rows(session, table, rows, conflict_columns))


def insert_new_rows(session: Session, table, rows: list[dict], conflict_columns: list[str], returning=None) -> list:
    """INSERT … ON CONFLICT DO NOTHING; returns the `returning` columns (default: the primary key)
    of the rows that went in, not of those that were there already."""
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only the two supported databases
        raise RuntimeError(f"unsupported database: {dialect}")
    # RETURNING says what went in; rowcount is not reliable for executemany on every driver.
    statement = insert(table).on_conflict_do_nothing(index_elements=conflict_columns).returning(
        *(returning if returning is not None else table.primary_key.columns))
    return list(session.execute(statement, rows).all())
