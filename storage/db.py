"""Engines and transactions: SQLite (WAL, busy timeout, serialized writers) or PostgreSQL by URL; the
`Database` and the `UnitOfWork` the engine's services run their steps in (both `Transactions`)."""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from queue import Full, Queue
from typing import NamedTuple, Protocol, TypeVar

from sqlalchemy import DateTime, Engine, create_engine, event, func, type_coerce
from sqlalchemy.engine import make_url
from sqlmodel import Session

T = TypeVar("T")


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


class _Failed(NamedTuple):
    error: BaseException


_DONE = object()


def read_ahead(batches: Iterator[T], depth: int = 2) -> Iterator[T]:
    """The batches made by a thread of their own, up to `depth` ahead of the caller: a database driver
    that lets go of the GIL while the database works (sqlite3 while it steps, psycopg while it waits)
    reads the next batch on the other core while the caller writes this one. An error is raised in the
    caller; a caller that stops early stops the thread, which closes `batches` (and its connection)."""
    handoff: Queue = Queue(maxsize=depth)
    stop = threading.Event()

    def hand(item) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not hand(batch):
                    return
            hand(_DONE)
        except BaseException as error:  # noqa: BLE001 - handed to the caller, who raises it
            hand(_Failed(error))
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


TIME_RESOLUTIONS = ("hour", "minute", "second")
_SQLITE_TRUNCATION = {"hour": "%Y-%m-%d %H:00:00", "minute": "%Y-%m-%d %H:%M:00", "second": "%Y-%m-%d %H:%M:%S"}


def utc_truncated(engine: Engine, column, resolution: str):
    """A stored UTC time cut to `resolution` by the database, read back as a naive UTC datetime: exact
    times never leave it, and no Python runs per row to cut them (a million rows carry three each)."""
    if resolution not in TIME_RESOLUTIONS:
        raise ValueError(f"time resolution must be one of {', '.join(TIME_RESOLUTIONS)}, not {resolution!r}")
    if is_postgres(engine):
        # In UTC whatever the session's time zone: a zone half an hour off would cut other hours.
        cut = func.date_trunc(resolution, func.timezone("UTC", column))
    else:
        cut = func.strftime(_SQLITE_TRUNCATION[resolution], column)  # SQLite keeps UTC as text
    return type_coerce(cut, DateTime())


class _WriterLock:
    """The process's writers of one SQLite database, one at a time. A thread that already holds a
    write transaction (a unit of work, say) and opens another would wait for itself until the busy
    timeout: that mistake is refused at once instead (on SQLite; the tests run there too)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None

    def __enter__(self) -> None:
        if self._owner == threading.get_ident():  # only this thread sets its own id, so no race
            raise RuntimeError("this thread already has a write transaction open on this database (a unit of "
                               "work?): a second one would wait for the first; write in the first instead")
        self._lock.acquire()
        self._owner = threading.get_ident()

    def __exit__(self, *exc) -> None:
        self._owner = None
        self._lock.release()


_sqlite_writers: weakref.WeakKeyDictionary[Engine, _WriterLock] = weakref.WeakKeyDictionary()
_sqlite_writers_guard = threading.Lock()


def _writer_lock(engine: Engine) -> _WriterLock:
    with _sqlite_writers_guard:
        lock = _sqlite_writers.get(engine)
        if lock is None:
            lock = _sqlite_writers[engine] = _WriterLock()
        return lock


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One write transaction of its own: commit on success, roll back on any error.

    On SQLite the writers of this process also queue on a lock of their own: SQLite's busy
    handler polls with growing sleeps (up to 100 ms), so waiting there makes long tails, while a
    lock hands over the moment the previous writer commits. Other processes still meet the
    database's own lock and busy timeout.
    """
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
    """A fresh session for reading (on SQLite a deferred transaction: it never waits for a writer)."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


class Transactions(Protocol):
    """Where a step of the game runs: the database itself (`Database`, each step its own
    transaction) or one update's `UnitOfWork` (each step a savepoint of the unit's transaction).
    The engine's services take one of these, never an Engine, so which it is is the caller's
    explicit choice."""

    def write(self) -> AbstractContextManager[Session]:
        """A session to change things in: committed as one step, or undone as one on any error."""
        ...

    def read(self) -> AbstractContextManager[Session]:
        """A session to read in."""
        ...


class Database:
    """The database as the engine's services use it outside an update: every `write()` is one
    transaction of its own (`session_scope`), every `read()` a fresh session. `unit()` opens one
    transaction that many steps share."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def write(self) -> AbstractContextManager[Session]:
        return session_scope(self.engine)

    def read(self) -> AbstractContextManager[Session]:
        return read_session(self.engine)

    @contextmanager
    def unit(self) -> Iterator[UnitOfWork]:
        """One write transaction around many steps, committed when the block ends (rolled back if it
        raises). The bots handle an update in one, so the update is marked handled in the same
        transaction as everything it changed."""
        with session_scope(self.engine) as session:
            unit = UnitOfWork(session)
            try:
                yield unit
            finally:
                unit.session = None


class UnitOfWork:
    """One transaction that many steps share. Each `write()` is a SAVEPOINT of it, so a step the
    rules refuse undoes only itself; `read()` is the unit's own session, so a read sees what the
    unit wrote so far. Nothing is committed until the unit is (`Database.unit`)."""

    def __init__(self, session: Session) -> None:
        self.session: Session | None = session

    def _open(self) -> Session:
        if self.session is None:
            raise RuntimeError("this unit of work has ended")
        return self.session

    @contextmanager
    def write(self) -> Iterator[Session]:
        session = self._open()
        with session.begin_nested():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        yield self._open()


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
