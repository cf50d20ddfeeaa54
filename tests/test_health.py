"""/healthz, /readyz and /metrics (core/health.py, core/metrics.py) on the servers as they run:

- `sticktionary run` in webhook mode, a process of its own behind the local Bot API sandbox: alive,
  ready, and its counters move by exactly the updates it handled (and a Telegram failure is counted
  by method and code);
- `sticktionary run --workers 2` on PostgreSQL and Redis, deliveries spread over the workers on one
  port: a scrape of either worker gives the sum, and each worker's own files add up to it; a worker
  killed and replaced leaves its counts in the totals and its live gauges out;
- /readyz says 503 while the database is unreachable (a TCP relay of the test's own in front of
  PostgreSQL is cut; the shared server is never touched), and 200 again once it is back;
- `run` by long polling with STICKTIONARY_HEALTH_LISTEN; the pull server and `sticktionary play`.

Every /metrics page is read with prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session, select

from offline.demo_pack import load_demo_pack
from offline.sandbox import Sandbox
from storage.models import InboxStatus, InboxUpdate
from tests.processes import shared_redis_url
from tests.test_outages import BOT, SECRET, Command, _environment, _players

FINISHED = (InboxStatus.DONE, InboxStatus.SKIPPED, InboxStatus.FAILED)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _samples(text: str) -> list[tuple[str, dict, float]]:
    return [(sample.name, dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(text) for sample in family.samples]


def _total(samples, name: str, **labels) -> float:
    return sum(value for sample, given, value in samples
               if sample == name and all(given.get(key) == wanted for key, wanted in labels.items()))


async def _scrape(http: httpx.AsyncClient, base: str) -> list[tuple[str, dict, float]]:
    response = await http.get(f"{base}/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return _samples(response.text)


async def _send(http: httpx.AsyncClient, users: range, texts: tuple[str, ...]) -> int:
    sent = 0
    for text in texts:
        for user in users:
            response = await http.post("/sim/message", json={"token": BOT["token"], "user_id": user, "text": text})
            assert response.status_code == 200, response.text
            sent += 1
    return sent


async def _all_finished(db, count: int, timeout: float = 90) -> None:
    """Until the inbox holds `count` updates of the bot, every one finished (replies delivered)."""
    deadline = time.monotonic() + timeout

    def finished() -> tuple[int, int]:
        with Session(db) as session:
            rows = session.exec(select(InboxUpdate.status).where(InboxUpdate.bot_key == BOT["name"])).all()
        return len(rows), sum(1 for status in rows if status in FINISHED)

    while time.monotonic() < deadline:
        stored, done = await asyncio.to_thread(finished)
        if stored >= count and done == stored:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{count} updates not finished: {await asyncio.to_thread(finished)}")


def _stored(db) -> int:
    with Session(db) as session:
        return len(session.exec(select(InboxUpdate.update_id).where(InboxUpdate.bot_key == BOT["name"])).all())


async def _until(predicate, timeout: float = 30, pause: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        result = await predicate()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(pause)


# ---------------------------------------------------------------- run, webhook mode
async def _webhook_run(db, tmp_path: Path) -> None:
    port = _free_port()
    sandbox = Sandbox(rate_limits=True, seed=21)
    sandbox.add_bot(BOT["token"], "health_a_bot")
    api = await sandbox.start()
    env = _environment(db.url.render_as_string(hide_password=False), api, tmp_path,
                       STICKTIONARY_WEBHOOK_SECRET=SECRET, STICKTIONARY_WEBHOOK_URL=f"http://127.0.0.1:{port}",
                       STICKTIONARY_WEBHOOK_LISTEN=f"127.0.0.1:{port}")
    bot = Command(["run"], env, tmp_path / "bot.log")
    base = f"http://127.0.0.1:{port}"
    try:
        await bot.start(b"is running")
        async with httpx.AsyncClient(base_url=api, timeout=30) as http:
            alive = await http.get(f"{base}/healthz")
            assert alive.status_code == 200 and alive.json()["status"] == "alive", alive.text
            ready = await http.get(f"{base}/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json() == {"status": "ready", "checks": {"database": "ok", "bots": "ok"}}
            before = await _scrape(http, base)
            assert _total(before, "sticktionary_processes", role="bots") == 1
            assert _total(before, "sticktionary_database_up") == 1
            assert _total(before, "sticktionary_updates_handled_total", bot="a") == 0  # the series exist at 0
            assert _total(before, "sticktionary_search_index_documents") > 0  # the demo pack's seed queries
            sent = await _send(http, range(91_001, 91_006), ("/start", "/help"))
            await _all_finished(db, sent)
            after = await _scrape(http, base)

            def moved(name: str, **labels) -> float:
                return _total(after, name, **labels) - _total(before, name, **labels)

            assert moved("sticktionary_updates_received_total", bot="a", outcome="new") == sent
            assert moved("sticktionary_updates_handled_total", bot="a") == sent
            assert moved("sticktionary_updates_handled_total", bot="a", outcome="ok") == sent
            assert moved("sticktionary_handler_seconds_count", bot="a") == sent
            assert moved("sticktionary_update_seconds_count", bot="a") == sent
            assert moved("sticktionary_handler_seconds_sum", bot="a") > 0
            assert _total(after, "sticktionary_telegram_errors_total") == 0
            # A player who joins the game (language, consent, a first task) is active.
            joining = _players(db, http, range(91_010, 91_011), seed=1)[0]
            await joining.join()

            async def active() -> bool:
                samples = await _scrape(http, base)  # the database's gauges are read at most every 2 s
                return _total(samples, "sticktionary_players_active", language="en") >= 1 and \
                    _total(samples, "sticktionary_inbox_backlog", bot="a") == 0

            assert await _until(active, timeout=10)
            sent = await asyncio.to_thread(_stored, db)
            # Telegram fails for a while: each failed sendMessage is counted, by method and code.
            await http.post("/sim/faults", json={"error_5xx": 1.0})
            sent += await _send(http, range(91_001, 91_002), ("/help",))

            async def failures() -> float:
                return _total(await _scrape(http, base), "sticktionary_telegram_errors_total", bot="a",
                              method="sendMessage", code="502")

            assert await _until(failures) >= 1
            await http.post("/sim/faults", json={"error_5xx": 0.0})
            await _all_finished(db, sent)
            last = await _scrape(http, base)
            assert _total(last, "sticktionary_updates_handled_total", bot="a") - \
                _total(before, "sticktionary_updates_handled_total", bot="a") == sent
            assert _total(last, "sticktionary_replies_dropped_total") == 0
    finally:
        await bot.stop()
        await sandbox.stop()
    log = (tmp_path / "bot.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


def test_run_by_webhook_is_alive_ready_and_counts_what_it_handles(game_db, tmp_path):
    asyncio.run(asyncio.wait_for(_webhook_run(game_db, tmp_path), 300))


# ---------------------------------------------------------------- run --workers 2
def _per_process(folder: Path, tmp_path: Path) -> dict[int, float]:
    """Updates handled, as each worker's own counter file says (the supervisor's folder)."""
    counts = {}
    for path in folder.glob("counter_*.db"):
        alone = tmp_path / f"alone-{path.stem}"
        alone.mkdir()
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        samples = [(s.name, dict(s.labels), s.value) for family in registry.collect() for s in family.samples]
        counts[int(path.stem.split("_")[1])] = _total(samples, "sticktionary_updates_handled_total", bot="a")
    return counts


async def _two_workers(db, tmp_path: Path) -> None:
    load_demo_pack(db)
    port = _free_port()
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"left by an earlier run")  # cleaned by the supervisor
    sandbox = Sandbox(rate_limits=True, seed=22, webhook_connections="new")  # spread over the workers
    sandbox.add_bot(BOT["token"], "health_a_bot")
    api = await sandbox.start()
    env = _environment(db.url.render_as_string(hide_password=False), api, tmp_path,
                       STICKTIONARY_REDIS_URL=shared_redis_url(), STICKTIONARY_WEBHOOK_SECRET=SECRET,
                       STICKTIONARY_WEBHOOK_URL=f"http://127.0.0.1:{port}",
                       STICKTIONARY_WEBHOOK_LISTEN=f"127.0.0.1:{port}", PROMETHEUS_MULTIPROC_DIR=str(folder))
    supervisor = Command(["run", "--workers", "2"], env, tmp_path / "workers.log")
    base = f"http://127.0.0.1:{port}"
    try:
        await supervisor.start(b"is running", count=2)
        assert not (folder / "counter_1.db").exists()
        async with httpx.AsyncClient(base_url=api, timeout=30) as http:
            ready = await http.get(f"{base}/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"database": "ok", "redis": "ok", "bots": "ok"}
            sent = await _send(http, range(92_001, 92_011), ("/start", "/help", "/help"))
            await _all_finished(db, sent)
            # Every scrape, whichever worker the kernel gives it to, is the sum of both.
            for _ in range(6):
                async with httpx.AsyncClient(timeout=30) as fresh:  # a new connection: maybe the other worker
                    samples = await _scrape(fresh, base)
                assert _total(samples, "sticktionary_updates_handled_total", bot="a") == sent
                assert _total(samples, "sticktionary_updates_received_total", bot="a", outcome="new") == sent
                assert _total(samples, "sticktionary_handler_seconds_count", bot="a") == sent
                assert _total(samples, "sticktionary_processes", role="bots") == 2
            per_process = _per_process(folder, tmp_path)
            # A worker killed: the supervisor marks it dead and starts another. Its counts stay in the
            # totals; its live gauges go (two processes again, not three).
            victim = psutil.Process(supervisor.process.pid).children()[0]
            victim.kill()

            async def replaced() -> bool:
                children = psutil.Process(supervisor.process.pid).children()
                if len(children) != 2 or victim.pid in {child.pid for child in children}:
                    return False
                async with httpx.AsyncClient(timeout=30) as fresh:
                    samples = await _scrape(fresh, base)
                return _total(samples, "sticktionary_processes", role="bots") == 2 and \
                    _total(samples, "sticktionary_updates_handled_total", bot="a") == sent

            assert await _until(replaced, timeout=120, pause=0.5)
            more = await _send(http, range(92_001, 92_003), ("/help",))
            await _all_finished(db, sent + more)
            async with httpx.AsyncClient(timeout=30) as fresh:
                samples = await _scrape(fresh, base)
            assert _total(samples, "sticktionary_updates_handled_total", bot="a") == sent + more
    finally:
        await supervisor.stop()
        await sandbox.stop()
    handling = {pid: count for pid, count in per_process.items() if count}
    assert len(handling) == 2, per_process  # both workers handled some
    assert sum(handling.values()) == sent, per_process
    log = (tmp_path / "workers.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.postgres
def test_with_two_workers_the_counts_of_both_add_up(db, tmp_path):
    if db.dialect.name != "postgresql":
        pytest.skip("several processes on one database: PostgreSQL")
    asyncio.run(asyncio.wait_for(_two_workers(db, tmp_path), 300))


# ---------------------------------------------------------------- the database away
class Relay:
    """A TCP relay in front of PostgreSQL: `cut()` refuses new connections and drops open ones."""

    def __init__(self, target: int):
        self.target = target
        self.port = _free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._connect, "127.0.0.1", self.port)

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, upstream_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self.writers -= {writer, upstream_writer}

    async def cut(self) -> None:
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await self.server.wait_closed()


async def _database_away(db, tmp_path: Path) -> None:
    load_demo_pack(db)
    relay = Relay(db.url.port or 5432)
    await relay.start()
    port = _free_port()
    sandbox = Sandbox(rate_limits=True, seed=23)
    sandbox.add_bot(BOT["token"], "health_a_bot")
    api = await sandbox.start()
    url = db.url.set(port=relay.port).render_as_string(hide_password=False)
    env = _environment(url, api, tmp_path, STICKTIONARY_WEBHOOK_SECRET=SECRET,
                       STICKTIONARY_WEBHOOK_URL=f"http://127.0.0.1:{port}",
                       STICKTIONARY_WEBHOOK_LISTEN=f"127.0.0.1:{port}")
    bot = Command(["run"], env, tmp_path / "bot.log")
    base = f"http://127.0.0.1:{port}"
    try:
        await bot.start(b"is running")
        async with httpx.AsyncClient(timeout=30) as http:
            assert (await http.get(f"{base}/readyz")).status_code == 200
            await relay.cut()
            away = await http.get(f"{base}/readyz")
            assert away.status_code == 503, away.text
            body = away.json()
            assert body["status"] == "not ready" and body["checks"]["database"] != "ok", body
            assert body["checks"]["bots"] == "ok"
            assert (await http.get(f"{base}/healthz")).status_code == 200  # alive all the same
            samples = await _scrape(http, base)  # still a page: what the process counts, and the database down
            assert _total(samples, "sticktionary_database_up") == 0
            assert _total(samples, "sticktionary_processes", role="bots") == 1
            await relay.start()

            async def ready_again() -> bool:
                return (await http.get(f"{base}/readyz")).status_code == 200

            assert await _until(ready_again, timeout=30)
    finally:
        await bot.stop()
        await sandbox.stop()
        if relay.server is not None and relay.server.is_serving():
            await relay.cut()


@pytest.mark.postgres
def test_readyz_is_503_while_the_database_is_unreachable(db, tmp_path):
    if db.dialect.name != "postgresql":
        pytest.skip("a relay in front of the PostgreSQL server")
    asyncio.run(asyncio.wait_for(_database_away(db, tmp_path), 300))


# ---------------------------------------------------------------- run by long polling
async def _polling_listener(db, tmp_path: Path) -> None:
    port = _free_port()
    sandbox = Sandbox(rate_limits=True, seed=24)
    sandbox.add_bot(BOT["token"], "health_a_bot")
    api = await sandbox.start()
    env = _environment(db.url.render_as_string(hide_password=False), api, tmp_path,
                       STICKTIONARY_HEALTH_LISTEN=f"127.0.0.1:{port}")
    bot = Command(["run"], env, tmp_path / "bot.log")
    base = f"http://127.0.0.1:{port}"
    try:
        await bot.start(b"is running")
        async with httpx.AsyncClient(base_url=api, timeout=30) as http:
            assert (await http.get(f"{base}/healthz")).json()["status"] == "alive"
            assert (await http.get(f"{base}/readyz")).json() == {"status": "ready",
                                                                 "checks": {"database": "ok", "bots": "ok"}}
            sent = await _send(http, range(93_001, 93_003), ("/start",))
            await _all_finished(db, sent)
            samples = await _scrape(http, base)
            assert _total(samples, "sticktionary_updates_handled_total", bot="a") == sent
            assert (await http.get(f"{base}/telegram/a")).status_code == 404  # only the three endpoints
    finally:
        await bot.stop()
        await sandbox.stop()


def test_run_by_long_polling_answers_on_the_health_listener(game_db, tmp_path):
    asyncio.run(asyncio.wait_for(_polling_listener(game_db, tmp_path), 300))


def test_a_health_listener_on_a_taken_port_is_one_clear_line(game_db, tmp_path):
    import subprocess

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = _environment(game_db.url.render_as_string(hide_password=False), "http://127.0.0.1:9", tmp_path,
                           STICKTIONARY_HEALTH_LISTEN=f"127.0.0.1:{taken.getsockname()[1]}")
        result = subprocess.run([sys.executable, "-c", "from sticktionary.cli import app; app()", "run"], env=env,
                                capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert result.returncode == 2, result.stderr
    assert "cannot start: cannot listen on STICKTIONARY_HEALTH_LISTEN" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- jobs start
async def _jobs(db, tmp_path: Path) -> None:
    port = _free_port()
    env = _environment(db.url.render_as_string(hide_password=False), "http://127.0.0.1:9", tmp_path,
                       STICKTIONARY_HEALTH_LISTEN=f"127.0.0.1:{port}", STICKTIONARY_SCHEDULE_EXPIRY="* * * * * *")
    jobs = Command(["jobs", "start", "--only", "expiry"], env, tmp_path / "jobs.log")
    base = f"http://127.0.0.1:{port}"
    try:
        jobs.process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-c", "from sticktionary.cli import app; app()", *jobs.args], env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        async with httpx.AsyncClient(timeout=10) as http:
            async def answering() -> bool:
                try:
                    return (await http.get(f"{base}/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            assert await _until(answering, timeout=120)
            ready = await http.get(f"{base}/readyz")
            assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok"}, ready.text

            async def ran() -> list:
                samples = await _scrape(http, base)
                return samples if _total(samples, "sticktionary_job_runs_total", job="expiry", outcome="done") >= 2 \
                    else []

            samples = await _until(ran, timeout=30)
            assert samples, "the expiry job did not run twice"
            assert _total(samples, "sticktionary_job_seconds_count", job="expiry", outcome="done") >= 2
            assert _total(samples, "sticktionary_processes", role="jobs") == 1
    finally:
        await jobs.stop()


def test_jobs_start_counts_its_runs_on_the_health_listener(game_db, tmp_path):
    asyncio.run(asyncio.wait_for(_jobs(game_db, tmp_path), 300))


# ---------------------------------------------------------------- the pull server
@pytest.mark.asyncio
async def test_the_pull_server_answers_health_and_metrics_without_a_token(tmp_path):
    from aiohttp import web

    from jobs.pull_server import make_app

    exports = tmp_path / "exports"
    (exports / "2026-12-01T030000Z").mkdir(parents=True)
    (exports / "2026-12-01T030000Z" / "manifest.json").write_text(json.dumps({"queries": 3}))
    runner = web.AppRunner(make_app(exports, ["researcher-token"]))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(f"{base}/healthz")).json()["status"] == "alive"
            ready = await http.get(f"{base}/readyz")
            assert ready.status_code == 200 and ready.json()["checks"] == {"exports": "ok"}
            samples = await _scrape(http, base)
            assert _total(samples, "sticktionary_exports") == 1
            assert _total(samples, "sticktionary_export_latest_timestamp_seconds") > 0
            assert _total(samples, "sticktionary_processes", role="pull") == 1
            assert (await http.get(f"{base}/exports")).status_code == 401  # the exports still need a token
            shutil.rmtree(exports)
            gone = await http.get(f"{base}/readyz")
            assert gone.status_code == 503 and "not a folder" in gone.json()["checks"]["exports"]
    finally:
        await runner.cleanup()


# ---------------------------------------------------------------- sticktionary play
@pytest.mark.asyncio
async def test_play_serves_health_and_metrics_beside_its_page(tmp_path):
    from sticktionary.play.app import play

    port = _free_port()
    stop = asyncio.Event()
    said: list[str] = []
    game = asyncio.create_task(play(tmp_path / "play", port=port, players=0, open_browser=False, stop=stop,
                                    echo=said.append))
    base = f"http://127.0.0.1:{port}"
    try:
        async def started() -> bool:
            if game.done():
                game.result()
            return any(line.startswith("ready in") for line in said)

        assert await _until(started, timeout=180)
        async with httpx.AsyncClient(timeout=30) as http:
            assert (await http.get(f"{base}/healthz")).status_code == 200
            ready = await http.get(f"{base}/readyz")
            assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "bots": "ok"}, ready.text
            before = await _scrape(http, base)
            await http.post(f"{base}/sim/message", json={"token": "1001:play-en", "user_id": 101, "text": "/start"})

            async def handled() -> bool:
                samples = await _scrape(http, base)
                return _total(samples, "sticktionary_updates_handled_total", bot="en") > \
                    _total(before, "sticktionary_updates_handled_total", bot="en")

            assert await _until(handled)
            samples = await _scrape(http, base)
            assert _total(samples, "sticktionary_processes", role="play") == 1
            assert {labels["language"] for name, labels, _ in samples if name == "sticktionary_players_active"} \
                >= {"en", "zh"}
    finally:
        stop.set()
        await asyncio.wait_for(game, 60)


def test_every_metric_in_the_module_is_in_the_readme():
    from prometheus_client.metrics import MetricWrapperBase

    from core import metrics

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    names = {value._name for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)}
    assert len(names) >= 15
    names |= {"sticktionary_inbox_backlog", "sticktionary_outbox_messages", "sticktionary_players_active",
              "sticktionary_search_log_lag_rows", "sticktionary_database_up"}
    missing = sorted(name for name in names if f"`{name}" not in readme)
    assert not missing, missing
    dashboard = json.loads((Path(__file__).parent.parent / "docs" / "grafana-dashboard.json").read_text())
    expressions = " ".join(target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", []))
    assert all(name.removesuffix("_total") in expressions for name in ("sticktionary_updates_handled",
                                                                        "sticktionary_handler_seconds",
                                                                        "sticktionary_inbox_backlog",
                                                                        "sticktionary_outbox_messages",
                                                                        "sticktionary_telegram_errors",
                                                                        "sticktionary_job_runs",
                                                                        "sticktionary_search_log_lag_rows",
                                                                        "sticktionary_players_active"))



# ---------------------------------------------------------------- the send policy's counts
@pytest.mark.asyncio
@pytest.mark.parametrize("framework", ["ptb", "aiogram"])
async def test_the_send_policy_counts_failed_calls_by_method_and_code(framework):
    """What each framework raises for a 502, a 400 and a 429, through the shell's translation and the
    send policy: counted by the Bot API method's name and the code."""
    from prometheus_client import REGISTRY

    from bots.transport import Owed, Rejected, SendPolicy

    if framework == "ptb":
        from telegram import error

        from bots.transport.ptb_shell import _translated
        failures = {"502": error.NetworkError("Bad Gateway"), "400": error.BadRequest("Bad Request: chat not found"),
                    "429": error.RetryAfter(0)}
    else:
        from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter, TelegramServerError
        from aiogram.methods import SendMessage

        from bots.transport.aiogram_shell import _translated
        method = SendMessage(chat_id=1, text="x")
        failures = {"502": TelegramServerError(method=method, message="Bad Gateway"),
                    "400": TelegramBadRequest(method=method, message="Bad Request: chat not found"),
                    "429": TelegramRetryAfter(method=method, message="Too Many Requests", retry_after=0)}
    bot = f"count-{framework}"
    policy = SendPolicy(bot, pacer=None)

    def counted(code: str) -> float:
        return REGISTRY.get_sample_value("sticktionary_telegram_errors_total",
                                         {"bot": bot, "method": "sendMessage", "code": code}) or 0.0

    async def send_message(failure):  # named as the frameworks' Bot methods are
        if failure is not None:
            raise failure
        return "sent"

    with pytest.raises(Owed):
        await policy.process_request(lambda: _translated(send_message(failures["502"])))
    policy.gate.succeeded()
    with pytest.raises(Rejected):
        await policy.process_request(lambda: _translated(send_message(failures["400"])))
    calls = iter([failures["429"], None])
    assert await policy.process_request(lambda: _translated(send_message(next(calls)))) == "sent"
    assert (counted("502"), counted("400"), counted("429")) == (1, 1, 1)
    assert REGISTRY.get_sample_value("sticktionary_telegram_retry_after_waits_total", {"bot": bot}) == 1


# ---------------------------------------------------------------- the gauges read from the database
def test_the_database_gauges_read_the_backlog_the_queue_and_the_active_players(db):
    """On SQLite and PostgreSQL: ages from the oldest rows, counts by status, players of the last 5
    minutes, the last successful run of each job, and nothing finished counted as waiting."""
    from datetime import timedelta

    from core.metrics import DatabaseState, render
    from storage.db import session_scope
    from storage.models import JobRun, OutboxMessage, Player, utcnow

    now = utcnow()
    with session_scope(db) as session:
        for update_id, status, age in ((1, "received", 60), (2, "handled", 30), (3, "done", 600), (4, "received", 5)):
            session.add(InboxUpdate(bot_key="a", update_id=update_id, chat_key=7, status=status,
                                    received_at=now - timedelta(seconds=age)))
        for number, (status, age) in enumerate((("pending", 120), ("sending", 10), ("dead", 900), ("sent", 999),
                                                ("held", 50))):
            session.add(OutboxMessage(dedupe_key=f"m{number}", kind="leaderboard", chat_id=-1, status=status,
                                      created_at=now - timedelta(seconds=age)))
        for number, (language, minutes) in enumerate((("en", 1), ("en", 4), ("zh", 2), ("zh", 9))):
            session.add(Player(telegram_user_id=500 + number, pseudonym=f"p{number}", language=language,
                               last_active_at=now - timedelta(minutes=minutes)))
        finished = now - timedelta(hours=2)
        session.add(JobRun(job="export", scheduled_for=finished, runner="t", status="done", finished_at=finished))
        session.add(JobRun(job="export", scheduled_for=now, runner="t", status="failed", finished_at=now))
    samples = _samples(render(DatabaseState(db, ["a", "b"]).families()).decode())
    assert _total(samples, "sticktionary_database_up") == 1
    assert _total(samples, "sticktionary_inbox_backlog", bot="a", status="received") == 2
    assert _total(samples, "sticktionary_inbox_backlog", bot="a", status="handled") == 1
    assert _total(samples, "sticktionary_inbox_backlog", bot="b") == 0  # shown at 0
    assert 59 <= _total(samples, "sticktionary_inbox_oldest_unfinished_age_seconds", bot="a") < 90
    assert [_total(samples, "sticktionary_outbox_messages", status=s) for s in ("pending", "sending", "held", "dead")] \
        == [1, 1, 1, 1]
    assert 119 <= _total(samples, "sticktionary_outbox_oldest_queued_age_seconds") < 150
    assert (_total(samples, "sticktionary_players_active", language="en"),
            _total(samples, "sticktionary_players_active", language="zh")) == (2, 1)
    assert abs(_total(samples, "sticktionary_job_last_success_timestamp_seconds", job="export")
               - finished.timestamp()) < 1
