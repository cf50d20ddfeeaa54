"""Outages said once: a dependency that stops answering (the database, Redis, Telegram) is a wait,
not an error. The log gets one warning when an outage begins and one line when it ends, with how
long it lasted and how many pieces of work waited for it — never a traceback per attempt.

One `Outage` per dependency and process (`outage("Redis")`); every place that talks to that
dependency reports to it: `begin(error)` on a failure that is the dependency being away, `end()`
on the next success, `waiting(key)` for each piece of work held back meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger("sticktionary.outage")

_WAITING_REMEMBERED = 100_000  # distinct pieces of work counted per outage, at most


class Outage:
    def __init__(self, name: str):
        self.name = name
        self.since: float | None = None  # monotonic time the outage began; None: no outage
        self._waiting: set[Hashable] = set()
        self._held_back = 0  # work held back without a key to tell pieces apart
        self._lock = threading.Lock()  # game threads and the event loop both report

    @property
    def active(self) -> bool:
        return self.since is not None

    def begin(self, error: BaseException | str) -> bool:
        """The dependency failed in a way that means it is away. True if this began the outage."""
        with self._lock:
            if self.since is not None:
                return False
            self.since = time.monotonic()
            self._waiting.clear()
            self._held_back = 0
        reason = error if isinstance(error, str) else f"{type(error).__name__}: {_first_line(error)}"
        log.warning("%s is unreachable (%s): work waits until it is back", self.name, reason)
        return True

    def waiting(self, key: Hashable | None = None) -> None:
        """A piece of work (an update, a reply, an outbox message) waits for the outage to end."""
        with self._lock:
            if self.since is None:
                return
            if key is None:
                self._held_back += 1
            elif len(self._waiting) < _WAITING_REMEMBERED:
                self._waiting.add(key)

    def end(self) -> float | None:
        """The dependency answered again. Returns how long the outage lasted (None: there was none)."""
        if self.since is None:  # the common case, without taking the lock
            return None
        with self._lock:
            if self.since is None:
                return None
            lasted, self.since = time.monotonic() - self.since, None
            waited = len(self._waiting) + self._held_back
        log.warning("%s is back after %.1f s; %d pieces of work waited for it", self.name, lasted, waited)
        return lasted


_outages: dict[str, Outage] = {}
_outages_lock = threading.Lock()


def outage(name: str) -> Outage:
    """This process's outage record for a dependency."""
    with _outages_lock:
        return _outages.setdefault(name, Outage(name))


DATABASE = "the database"
REDIS = "Redis"


def is_database_outage(error: BaseException) -> bool:
    """The database is away (refused or dropped connections, a server shutting down), as opposed
    to a query the database refused: the former is waited out, the latter is a bug to log."""
    if isinstance(error, PoolTimeout):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, OperationalError | InterfaceError):
        sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None)
        # PostgreSQL: class 08 (connection exception), 57P01-57P03 (admin shutdown, cannot connect now).
        if sqlstate is None or sqlstate.startswith("08") or sqlstate in {"57P01", "57P02", "57P03"}:
            return "locked" not in str(error).lower()  # SQLite's "database is locked" is contention, not an outage
    return False


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else ""
