"""Every Prometheus metric Sticktionary exports, defined here and nowhere else, with the one-line
hooks the rest of the code calls and the page `/metrics` answers with.

Two kinds:

- **What a process counts** (updates, handler latency, Telegram errors, jobs, the search index): the
  metrics below, fed by hooks in bots/, jobs/ and core/. Under `sticktionary run --workers N` they
  use prometheus-client's multiprocess mode: the supervisor sets PROMETHEUS_MULTIPROC_DIR to a fresh
  folder (`fresh_multiprocess_dir`), each worker writes its values there, the scrape of any worker
  sums them (`MultiProcessCollector`), and a worker that exits is marked dead (`process_exited`).
- **What the database holds** (the inbox backlog, the outbox queue and its oldest message, active
  players, the change log's head, the last successful job run): read at scrape time by
  `DatabaseState`, the same whichever process answers, cached for a couple of seconds.

README.md ("Metrics") lists every metric with what it means.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from storage.models import (
    InboxStatus,
    InboxUpdate,
    JobRun,
    OutboxMessage,
    OutboxStatus,
    Player,
    PlayerKind,
    SearchChange,
    utcnow,
)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
ACTIVE_WINDOW = timedelta(minutes=5)  # "players active": acted in the game this recently

# ---------------------------------------------------------------------------------------------- updates
UPDATES_RECEIVED = Counter("sticktionary_updates_received", "Updates Telegram handed over (webhook or getUpdates): "
                           "new ones stored in the inbox, or duplicates of stored ones", ["bot", "outcome"])
UPDATES_HANDLED = Counter("sticktionary_updates_handled", "Updates handled (once each, in whichever process): ok, "
                          "failed (the handler raised; the player was told) or skipped (not a move in the game)",
                          ["bot", "outcome"])
HANDLER_SECONDS = Histogram("sticktionary_handler_seconds", "Time the game took to handle one update (its "
                            "database transaction included)", ["bot"],
                            buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
UPDATE_SECONDS = Histogram("sticktionary_update_seconds", "From an update's arrival to its last reply delivered "
                           "(what a player waits)", ["bot"],
                           buckets=(.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 3600))
REPLIES_DROPPED = Counter("sticktionary_replies_dropped", "Replies given up on purpose: too_old "
                          "(STICKTIONARY_REPLY_MAX_AGE_SECONDS), attempts (the send budget), forbidden (the player "
                          "blocked the bot), refused (Telegram refused them for good)", ["bot", "reason"])

# ---------------------------------------------------------------------------------------------- Telegram
TELEGRAM_ERRORS = Counter("sticktionary_telegram_errors", "Bot API calls that failed, by method and code (400, "
                          "401, 403, 409, 429, 5xx or a 5xx code, network, other)", ["bot", "method", "code"])
RETRY_AFTER_WAITS = Counter("sticktionary_telegram_retry_after_waits", "429 answers waited out (no attempt spent)",
                            ["bot"])
RETRY_AFTER_SECONDS = Counter("sticktionary_telegram_retry_after_seconds", "Seconds Telegram asked to wait in "
                              "its 429 answers (retry_after)", ["bot"])
OUTBOX_DELIVERIES = Counter("sticktionary_outbox_deliveries", "Outbox messages tried by this bot: sent, retry "
                            "(put back for a later try) or dead (dead-lettered)", ["bot", "outcome"])

# ---------------------------------------------------------------------------------------------- jobs
JOB_RUNS = Counter("sticktionary_job_runs", "Job firings: done, failed, locked (another run held the job) or "
                   "taken (this slot already ran elsewhere)", ["job", "outcome"])
JOB_SECONDS = Histogram("sticktionary_job_seconds", "How long job runs took (done or failed)", ["job", "outcome"],
                        buckets=(.1, .5, 1, 5, 15, 60, 300, 900, 3600))

# ---------------------------------------------------------------------------------------------- search
SEARCH_DOCUMENTS = Gauge("sticktionary_search_index_documents", "Stickers with a document in the search index "
                         "(the largest of the live processes)", ["language"], multiprocess_mode="livemax")
SEARCH_POSITION = Gauge("sticktionary_search_log_position", "Highest change-log id applied to the search index "
                        "(the furthest behind of the live processes)", multiprocess_mode="livemin")
SEARCH_CAUGHT_UP = Gauge("sticktionary_search_log_caught_up_timestamp_seconds", "When the search index last "
                         "caught up with the change log (the oldest of the live processes)",
                         multiprocess_mode="livemin")

# ---------------------------------------------------------------------------------------------- processes
PROCESSES = Gauge("sticktionary_processes", "Live processes, by role (bots, jobs, pull, play)", ["role"],
                  multiprocess_mode="livesum")
LOOP_LAG = Gauge("sticktionary_event_loop_lag_seconds", "How late the event loop's last heartbeat came (the "
                 "worst of the live processes)", ["role"], multiprocess_mode="livemax")


# ---------------------------------------------------------------------------------------------- hooks
def bot_started(bot: str) -> None:
    """The bot's series exist from the start (at 0), so dashboards and rate() see them at once."""
    for outcome in ("new", "duplicate"):
        UPDATES_RECEIVED.labels(bot, outcome)
    for outcome in ("ok", "failed", "skipped"):
        UPDATES_HANDLED.labels(bot, outcome)
    RETRY_AFTER_WAITS.labels(bot)
    HANDLER_SECONDS.labels(bot)


def updates_received(bot: str, given: int, new: int) -> None:
    UPDATES_RECEIVED.labels(bot, "new").inc(new)
    if given > new:
        UPDATES_RECEIVED.labels(bot, "duplicate").inc(given - new)


def update_handled(bot: str, outcome: str | None, seconds: float) -> None:
    """`outcome` None: the update was handled earlier (only its replies were left): not counted again."""
    if outcome is not None:
        UPDATES_HANDLED.labels(bot, outcome).inc()
        HANDLER_SECONDS.labels(bot).observe(seconds)


def update_done(bot: str, received_at) -> None:
    UPDATE_SECONDS.labels(bot).observe(max(0.0, (utcnow() - received_at).total_seconds()))


def reply_dropped(bot: str, reason: str) -> None:
    REPLIES_DROPPED.labels(bot, reason).inc()


def telegram_failed(bot: str, error: BaseException, method: str | None = None) -> None:
    """A Bot API call failed (a 429 too: it is also counted as a wait, with the seconds asked for)."""
    code = error_code(error)
    TELEGRAM_ERRORS.labels(bot, method or getattr(error, "method", None) or "unknown", code).inc()
    if code == "429":
        RETRY_AFTER_WAITS.labels(bot).inc()
        RETRY_AFTER_SECONDS.labels(bot).inc(max(0.0, float(getattr(error, "seconds", 0.0) or 0.0)))


def outbox_delivered(bot: str, outcome: str) -> None:
    OUTBOX_DELIVERIES.labels(bot, outcome).inc()


def job_ran(job: str, outcome: str, seconds: float) -> None:
    JOB_RUNS.labels(job, outcome).inc()
    if outcome in ("done", "failed"):
        JOB_SECONDS.labels(job, outcome).observe(seconds)


def search_followed(follower) -> None:
    """A SearchFollower built or caught up: its documents and its position in the change log."""
    for language in follower.indexes.languages():
        SEARCH_DOCUMENTS.labels(language).set(len(follower.indexes[language]))
    SEARCH_POSITION.set(follower.high_water)
    SEARCH_CAUGHT_UP.set(time.time())


# Which code a failed call had, from the runtime's error kinds (bots/transport.py) and, for the
# transient ones, the framework's error they were translated from.
_CODES = {"RetryAfter": "429", "Forbidden": "403", "Unauthorized": "401", "Conflict": "409", "Rejected": "400",
          "ChatMigrated": "400", "UnexpectedError": "other"}


def error_code(error: BaseException) -> str:
    for kind in type(error).__mro__:
        if kind.__name__ in _CODES:
            return _CODES[kind.__name__]
    original = error.__context__ or error
    text = f"{error} {original}".lower()
    found = re.search(r"\b(5\d\d)\b", text)
    if found:
        return found.group(1)
    for status in HTTPStatus:  # the frameworks give the description ("Bad Gateway"), not the number
        if 500 <= status.value < 600 and status.phrase.lower() in text:
            return str(status.value)
    if "server" in type(original).__name__.lower():
        return "5xx"
    if "timed out" in text or "timeout" in text:
        return "timeout"
    return "network"


# ---------------------------------------------------------------------------------------------- processes
def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROCESS_ENV))


def fresh_multiprocess_dir() -> tuple[str, bool]:
    """For a supervisor: the folder its workers share (PROMETHEUS_MULTIPROC_DIR if the operator set
    one, else a new temporary one), emptied of any earlier run's files. (path, made here)."""
    given = os.environ.get(MULTIPROCESS_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
        return str(path), False
    return tempfile.mkdtemp(prefix="sticktionary-metrics-"), True


def process_exited(pid: int, path: str) -> None:
    """A worker is gone: its live gauges stop counting (its counters stay in the totals)."""
    from prometheus_client import multiprocess as mp

    mp.mark_process_dead(pid, path)


def remove_multiprocess_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def process_started(role: str) -> None:
    PROCESSES.labels(role).set(1)


# ---------------------------------------------------------------------------------------------- the database
class DatabaseState:
    """The gauges read from the database when scraped (any process gives the same answer), cached
    for `fresh` seconds so several scrapers do not multiply the queries. Blocking: call it off the
    event loop."""

    def __init__(self, db: Engine, bots: Iterable[str] = (), languages: Iterable[str] = ("en", "zh"),
                 fresh: float = 2.0):
        """`bots` and `languages` have their series shown at 0 when nothing waits (else they are absent)."""
        self.db = db
        self.bots = list(bots)
        self.languages = list(languages)
        self.fresh = fresh
        self._families: list[Metric] = []
        self._at = float("-inf")
        self._lock = threading.Lock()

    def families(self) -> list[Metric]:
        if not self._lock.acquire(blocking=False):  # another scrape is reading: its last answer will do
            return list(self._families)
        try:
            if time.monotonic() - self._at > self.fresh:
                try:
                    self._families = self._read() + [_gauge("sticktionary_database_up", "Whether the database "
                                                            "answered this scrape's queries", 1)]
                except Exception:  # noqa: BLE001 - the page still shows what the processes count
                    self._families = [_gauge("sticktionary_database_up", "Whether the database answered this "
                                             "scrape's queries", 0)]
                self._at = time.monotonic()
            return list(self._families)
        finally:
            self._lock.release()

    def _read(self) -> list[Metric]:
        now = utcnow()
        unfinished = (InboxStatus.RECEIVED, InboxStatus.HANDLED)
        queued = (OutboxStatus.PENDING, OutboxStatus.SENDING)
        with Session(self.db) as session:
            inbox = session.exec(select(InboxUpdate.bot_key, InboxUpdate.status, func.count(),
                                        func.min(InboxUpdate.received_at))
                                 .where(col(InboxUpdate.status).in_(unfinished))
                                 .group_by(InboxUpdate.bot_key, InboxUpdate.status)).all()
            outbox = session.exec(select(OutboxMessage.status, func.count(), func.min(OutboxMessage.created_at))
                                  .where(col(OutboxMessage.status).in_((*queued, OutboxStatus.HELD, OutboxStatus.DEAD)))
                                  .group_by(OutboxMessage.status)).all()
            active = session.exec(select(Player.language, func.count()).where(  # people, not partner models
                Player.last_active_at >= now - ACTIVE_WINDOW, Player.kind == PlayerKind.HUMAN)
                .group_by(Player.language)).all()
            head = session.exec(select(func.max(SearchChange.id))).one()
            jobs = session.exec(select(JobRun.job, func.max(JobRun.finished_at)).where(JobRun.status == "done")
                                .group_by(JobRun.job)).all()
        backlog = GaugeMetricFamily("sticktionary_inbox_backlog", "Updates stored and not finished: received (not "
                                    "handled yet) or handled (replies still owed)", labels=["bot", "status"])
        oldest_update = GaugeMetricFamily("sticktionary_inbox_oldest_unfinished_age_seconds", "Age of the oldest "
                                          "unfinished update", labels=["bot"])
        ages: dict[str, float] = dict.fromkeys(self.bots, 0.0)
        waiting = {(bot, str(status)): 0 for bot in self.bots for status in unfinished}
        for bot, status, count, oldest in inbox:
            waiting[(bot, status)] = count
            ages[bot] = max(ages.get(bot, 0.0), _age(now, oldest))
        for (bot, status), count in sorted(waiting.items()):
            backlog.add_metric([bot, status], count)
        for bot, age in ages.items():
            oldest_update.add_metric([bot], age)
        messages = GaugeMetricFamily("sticktionary_outbox_messages", "Outbox messages not sent (yet): pending, "
                                     "sending (claimed), held (for the player's next screen), dead (dead letters)",
                                     labels=["status"])
        counts = {status: (count, oldest) for status, count, oldest in outbox}
        for status in (*queued, OutboxStatus.HELD, OutboxStatus.DEAD):
            messages.add_metric([str(status)], counts.get(status, (0, None))[0])
        queued_since = [counts[s][1] for s in queued if s in counts and counts[s][1] is not None]
        oldest_message = _gauge("sticktionary_outbox_oldest_queued_age_seconds", "Age of the oldest message "
                                "waiting to be sent (pending or sending); 0 when none waits",
                                _age(now, min(queued_since)) if queued_since else 0.0)
        players = GaugeMetricFamily("sticktionary_players_active", "Players who acted in the game in the last "
                                    "5 minutes", labels=["language"])
        for language, count in sorted({**dict.fromkeys(self.languages, 0), **dict(active)}.items(),
                                      key=lambda item: str(item[0])):
            players.add_metric([language or "none"], count)
        last_success = GaugeMetricFamily("sticktionary_job_last_success_timestamp_seconds", "When each job last "
                                         "finished successfully (any process)", labels=["job"])
        for job, finished in jobs:
            if finished is not None:
                last_success.add_metric([job], _timestamp(finished))
        log_head = _gauge("sticktionary_search_log_head", "Highest id in the search change log", head or 0)
        return [backlog, oldest_update, messages, oldest_message, players, last_success, log_head]


def _age(now, moment) -> float:
    if moment is None:
        return 0.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=now.tzinfo)
    return max(0.0, (now - moment).total_seconds())


def _timestamp(moment) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=utcnow().tzinfo)
    return moment.timestamp()


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


# ---------------------------------------------------------------------------------------------- exports
def export_families(root) -> list[Metric]:
    """The pull server's view of the export folder: how many complete exports, and when the latest
    was made (an alert on its age catches a nightly export that stopped)."""
    from storage.export_files import latest_export, list_exports

    root = Path(root)
    versions = list_exports(root)
    families: list[Metric] = [_gauge("sticktionary_exports", "Complete research exports in the export folder",
                                     len(versions))]
    latest = latest_export(root)
    if latest is not None:
        families.append(_gauge("sticktionary_export_latest_timestamp_seconds", "When the latest complete export "
                               "was finished (its folder's time)", (root / latest).stat().st_mtime))
    return families


# ---------------------------------------------------------------------------------------------- the page
class _Families:
    def __init__(self, families: Iterable[Metric]):
        self._families = list(families)

    def collect(self):
        return iter(self._families)


def process_families() -> list[Metric]:
    """What this process counts, or under `run --workers N` what every worker counted, summed."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)
        return list(registry.collect())
    return list(REGISTRY.collect())


def render(extra: Iterable[Metric] = ()) -> bytes:
    """The /metrics page: the processes' metrics, then `extra` (read from the database), and the
    change log's lag when both its head and a position are known. Blocking (files, database)."""
    families = process_families() + list(extra)
    head = _value(families, "sticktionary_search_log_head")
    position = _value(families, "sticktionary_search_log_position")
    following = _value(families, "sticktionary_search_log_caught_up_timestamp_seconds")
    if head is not None and position is not None and following:  # only where a search index follows the log
        families.append(_gauge("sticktionary_search_log_lag_rows", "Change-log rows the furthest behind search "
                               "index has not applied (head - position)", max(0.0, head - position)))
    return generate_latest(_Families(families))


def _value(families: list[Metric], name: str) -> float | None:
    for family in families:
        if family.name == name:
            for sample in family.samples:
                if sample.name == name:
                    return sample.value
    return None
