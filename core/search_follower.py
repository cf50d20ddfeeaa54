"""A process's search indexes, built from the database and kept following its change log.

Start-up reads every searchable query once, in one snapshot together with the log's position, and
builds each language's index in bulk. From then on `catch_up()` reads the log rows after that
position, re-reads the documents of the stickers they name and replaces them in the index, all
languages' changes of one catch-up at once. It runs right after this process commits a change
(core/search_log.py), before a search when the last look is older than the poll interval, and
from a background thread when one is started.

Ids are handed out in order but, on PostgreSQL, committed in any order: a transaction holding id 7
can commit after id 8 was read. So ids skipped below the high-water mark are remembered as gaps and
asked for again on every catch-up until they appear, or until `gap_seconds` have passed (a rolled
back transaction leaves a gap forever). SQLite has a single writer and never leaves gaps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import Engine, func, select
from sqlmodel import col

from core import metrics
from core.datasets import consenting_authors, consenting_usable
from core.search import BM25Index, BulkBuild, SearchIndexes
from core.search_log import follow_commits, query_tokens, search_tokens
from storage.db import is_postgres
from storage.models import USABLE_QUERY_STATUSES, Query, SearchChange
from storage.outage import DATABASE, is_database_outage, outage

log = logging.getLogger(__name__)

# How far behind the highest id seen an id can still be waiting for its commit (at start-up, and
# after a jump): a change is recorded in a transaction of milliseconds.
START_WINDOW = 1_000


class SearchFollower:
    def __init__(self, db: Engine, *, poll_seconds: float = 0.5, gap_seconds: float = 120.0,
                 clock=time.monotonic) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        self.gap_seconds = gap_seconds
        self.clock = clock
        self.indexes = SearchIndexes()
        self.high_water = 0  # every id up to here was applied or is a gap
        self.gaps: dict[int, float] = {}  # id -> when it was first missed
        self.applied = 0  # log rows applied since start-up
        self.loaded_queries = 0  # queries the start-up build read
        self._catching_up = threading.Lock()
        self._last_look = float("-inf")
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ start-up
    def load(self) -> SearchIndexes:
        """Build every language's index in bulk from the searchable queries; the log position is read
        in the same snapshot, so the follower continues exactly where the build stopped."""
        with self._catching_up, self.db.connect() as connection:
            if is_postgres(self.db):
                connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                high = connection.execute(select(func.max(SearchChange.id))).scalar() or 0
                present = set(connection.execute(select(SearchChange.id).where(
                    SearchChange.id > high - START_WINDOW)).scalars())
                builds, loaded = self._build_all(connection)
                indexes = {language: BM25Index.from_build(build) for language, build in builds.items()}
        now = self.clock()
        self.indexes = SearchIndexes(indexes)
        self.loaded_queries = loaded
        self.high_water = high
        self.gaps = {i: now for i in range(max(1, high - START_WINDOW + 1), high + 1) if i not in present}
        self._last_look = now
        follow_commits(self.db, self)
        metrics.search_followed(self)
        return self.indexes

    def _build_all(self, connection) -> tuple[dict[str, BulkBuild], int]:
        """Every searchable query of every language in one pass over the table, straight from the
        driver's cursor (a million rows through SQLAlchemy's row objects cost seconds at start-up);
        on PostgreSQL a server-side cursor, so the rows stream instead of arriving all at once."""
        statement = (select(Query.language, Query.sticker_id, Query.text, Query.corrected_text, Query.search_tokens)
                     .where(col(Query.status).in_(USABLE_QUERY_STATUSES), consenting_authors()))
        sql = statement.compile(dialect=self.db.dialect, compile_kwargs={"render_postcompile": True})
        parameters = {name: str(value) for name, value in sql.construct_params().items()}  # plain str, not enums
        driver = connection.connection.dbapi_connection
        postgres = is_postgres(self.db)
        cursor = driver.cursor(name="search_start_up") if postgres else driver.cursor()
        builds: dict[str, BulkBuild] = defaultdict(BulkBuild)
        loaded = 0
        try:
            cursor.execute(str(sql), parameters if postgres else [parameters[name] for name in sql.positiontup])
            while rows := cursor.fetchmany(50_000):
                loaded += len(rows)
                chunks: dict[str, tuple[list[int], list[str]]] = defaultdict(lambda: ([], []))
                for language, sticker_id, text, corrected, stored in rows:
                    stickers, joined = chunks[language]
                    stickers.append(sticker_id)
                    joined.append(stored if stored is not None else search_tokens(corrected or text))
                for language, (stickers, joined) in chunks.items():
                    builds[language].add_joined(stickers, joined)
        finally:
            cursor.close()
        return builds, loaded

    # ------------------------------------------------------------------ following
    def catch_up(self) -> int:
        """Apply every committed change not applied yet; returns how many log rows were applied."""
        with self._catching_up:
            self._last_look = self.clock()
            with self.db.connect() as connection, connection.begin():
                condition = SearchChange.id > self.high_water
                if self.gaps:
                    condition = condition | col(SearchChange.id).in_(sorted(self.gaps))
                changes = connection.execute(select(SearchChange.id, SearchChange.language, SearchChange.sticker_id)
                                             .where(condition).order_by(SearchChange.id)).all()
                if changes:
                    stickers: dict[str, set[int]] = defaultdict(set)
                    for _, language, sticker_id in changes:
                        stickers[language].add(sticker_id)
                    documents = {language: self._documents(connection, language, ids)
                                 for language, ids in stickers.items()}
            now = self.clock()
            if changes:
                for language, replaced in documents.items():
                    self.indexes[language].replace_documents(replaced)
                self._advance([i for i, _, _ in changes], now)
                self.applied += len(changes)
            self._age_gaps(now)
            metrics.search_followed(self)
            return len(changes)

    def catch_up_if_due(self) -> None:
        """Catch up when the last look is older than the poll interval (called before a search)."""
        if self.clock() - self._last_look >= self.poll_seconds:
            try:
                self.catch_up()
            except Exception as error:  # noqa: BLE001 - a search goes on with what the index has
                _trouble(error, "search index: catching up failed; searching what is applied so far")

    def _documents(self, connection, language: str, sticker_ids: Iterable[int]) -> dict[int, list[str]]:
        """The current documents of these stickers: their searchable queries in collection order."""
        ids = sorted(sticker_ids)
        documents: dict[int, list[str]] = {sticker_id: [] for sticker_id in ids}
        for start in range(0, len(ids), 500):
            rows = connection.execute(
                select(Query.sticker_id, Query.text, Query.corrected_text, Query.search_tokens)
                .where(*consenting_usable(language), col(Query.sticker_id).in_(ids[start:start + 500]))
                .order_by(Query.id))
            for sticker_id, text, corrected, stored in rows:
                documents[sticker_id].extend(query_tokens(text, corrected, stored))
        return documents

    def _advance(self, ids: list[int], now: float) -> None:
        for i in ids:
            self.gaps.pop(i, None)
        top = max(ids)
        if top > self.high_water:
            seen = set(ids)
            for missing in range(max(self.high_water + 1, top - START_WINDOW), top):
                if missing not in seen:
                    self.gaps[missing] = now
            self.high_water = top

    def _age_gaps(self, now: float) -> None:
        for i in [i for i, since in self.gaps.items() if now - since > self.gap_seconds]:
            del self.gaps[i]

    # ------------------------------------------------------------------ background
    def start(self) -> None:
        """Poll from a daemon thread every poll interval (a long-running process: the bots)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="search-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.catch_up()
            except Exception as error:  # noqa: BLE001 - the database may be back at the next poll
                _trouble(error, "search index: polling the change log failed")
            else:
                outage(DATABASE).end()


def _trouble(error: BaseException, message: str) -> None:
    """The database being away is an outage (said once), anything else a failure to log."""
    if is_database_outage(error):
        outage(DATABASE).begin(error)
    else:
        log.error(message, exc_info=error)
