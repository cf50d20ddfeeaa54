"""`/healthz`, `/readyz` and `/metrics` for every server Sticktionary runs: the webhook receiver of
`sticktionary run`, the optional listener of `run` (long polling) and `jobs start`
(STICKTIONARY_HEALTH_LISTEN), the researchers' pull server and `sticktionary play`.

- `/healthz`: the process is alive and its event loop turns. A heartbeat task ticks every second;
  the answer is 200 with how late the last tick came, or 503 when no tick came for `STALL` seconds
  (the loop was blocked that long). A wedged loop does not answer at all: the prober's timeout says so.
- `/readyz`: 200 when every check passes, else 503, with each check's result as JSON. The checks
  are given by the server: the database answers and is at the newest migration (alembic current ==
  head), Redis answers (when configured), the bots have started, the export folder is readable.
- `/metrics`: Prometheus text (core/metrics.py).

Nothing here needs a token: the answers hold counts and check names, never a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from functools import lru_cache

from aiohttp import web
from sqlalchemy import Engine, text

from core import metrics

log = logging.getLogger(__name__)

STALL = 10.0  # seconds without a heartbeat before /healthz says the loop is stuck
CHECK_TIMEOUT = 5.0  # seconds a readiness check may take before it counts as failed

Check = Callable[[], Awaitable[str | None]]  # None: fine; else what is wrong, in a few words


@lru_cache(maxsize=4)
def _migration_heads(url: str) -> frozenset[str]:
    from alembic.script import ScriptDirectory

    from storage.migrate import alembic_config

    return frozenset(ScriptDirectory.from_config(alembic_config(url)).get_heads())


def _database_problem(db: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with db.connect() as connection:
        connection.execute(text("SELECT 1"))
        current = set(MigrationContext.configure(connection).get_current_heads())
    heads = _migration_heads(db.url.render_as_string(hide_password=False))
    if current != heads:
        return (f"migrations not current: the database is at {', '.join(sorted(current)) or 'no revision'}, "
                f"the newest is {', '.join(sorted(heads))} (run `sticktionary db upgrade`)")
    return None


def database_check(db: Engine) -> Check:
    """The database answers and alembic's current revision is the head. A database that hangs
    (rather than refuses) keeps one thread waiting, not one per probe: a probe while the last
    one's query is still out waits for that one."""
    pending: list[asyncio.Future] = []

    async def check() -> str | None:
        if not pending or pending[0].done():
            pending[:] = [asyncio.ensure_future(asyncio.to_thread(_database_problem, db))]
        return await asyncio.shield(pending[0])
    return check


def redis_check(url: str) -> tuple[Check, Callable[[], Awaitable[None]]]:
    """Redis answers PING. Returns the check and a close function."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)

    async def check() -> str | None:
        await client.ping()
        return None

    return check, client.aclose


def folder_check(path) -> Check:
    """A folder exists and can be listed (the exports the pull server serves)."""
    from pathlib import Path

    async def check() -> str | None:
        folder = Path(path)
        if not folder.is_dir():
            return f"{folder} is not a folder"
        await asyncio.to_thread(lambda: next(folder.iterdir(), None))
        return None
    return check


def flag_check(is_set: Callable[[], bool], problem: str) -> Check:
    async def check() -> str | None:
        return None if is_set() else problem
    return check


class Health:
    """The three endpoints of one server. `checks` name the readiness checks; `extra` gives the
    metrics read at scrape time (blocking: run off the loop), e.g. `metrics.DatabaseState(db).families`;
    `role` names the process kind in the metrics."""

    def __init__(self, role: str, checks: dict[str, Check] | None = None,
                 extra: Callable[[], list] | None = None):
        self.role = role
        self.checks: dict[str, Check] = dict(checks or {})
        self.extra = extra
        self.started = time.monotonic()
        self.last_beat = time.monotonic()
        self.lag = 0.0
        self._beating: asyncio.Task | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []
        metrics.process_started(role)

    def on_close(self, close: Callable[[], Awaitable[None]]) -> None:
        self._closers.append(close)

    # ------------------------------------------------------------------ heartbeat
    def start_heartbeat(self, every: float = 1.0) -> None:
        if self._beating is None:
            self.last_beat = time.monotonic()
            self._beating = asyncio.get_running_loop().create_task(self._beat(every))

    async def _beat(self, every: float) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(every)
            now = time.monotonic()
            self.lag = max(0.0, now - before - every)
            self.last_beat = now
            metrics.LOOP_LAG.labels(self.role).set(self.lag)

    async def close(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
            self._beating = None
        for close in self._closers:
            with contextlib.suppress(Exception):
                await close()
        self._closers.clear()

    # ------------------------------------------------------------------ endpoints
    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)

    async def healthz(self, _request: web.Request) -> web.Response:
        self.start_heartbeat()  # a server started outside start_heartbeat's reach starts beating now
        silent = time.monotonic() - self.last_beat
        alive = silent < STALL
        return _json(200 if alive else 503, {
            "status": "alive" if alive else "stalled", "loop_lag_seconds": round(self.lag, 4),
            "seconds_since_heartbeat": round(silent, 3), "uptime_seconds": round(time.monotonic() - self.started, 1)})

    async def readiness(self) -> dict[str, str]:
        """Each check's result: "ok" or what is wrong."""
        names = list(self.checks)
        results = await asyncio.gather(*(self._run(self.checks[name]) for name in names))
        return dict(zip(names, results, strict=True))

    async def _run(self, check: Check) -> str:
        try:
            problem = await asyncio.wait_for(check(), CHECK_TIMEOUT)
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT:g} s"
        except Exception as error:  # noqa: BLE001 - whatever fails is the finding
            first = str(error).strip().splitlines()
            return f"{type(error).__name__}: {first[0][:200] if first else ''}".rstrip(": ")
        return problem or "ok"

    async def readyz(self, _request: web.Request) -> web.Response:
        checks = await self.readiness()
        ready = all(result == "ok" for result in checks.values())
        return _json(200 if ready else 503, {"status": "ready" if ready else "not ready", "checks": checks})

    async def metrics(self, _request: web.Request) -> web.Response:
        extra = await asyncio.to_thread(self.extra) if self.extra is not None else []
        body = await asyncio.to_thread(metrics.render, extra)
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


def _json(status: int, payload: dict) -> web.Response:
    return web.Response(status=status, text=json.dumps(payload), content_type="application/json")


class HealthListener:
    """A small HTTP server with only the three endpoints (STICKTIONARY_HEALTH_LISTEN), for a process
    that has no server of its own: `run` by long polling, `jobs start`."""

    def __init__(self, health: Health):
        self.health = health
        self.app = web.Application()
        health.add_routes(self.app)
        self._runner: web.AppRunner | None = None

    async def start(self, listen: str) -> str:
        host, _, port = listen.rpartition(":")
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        # reuse_port: every worker of `run --workers N` may listen here, as on the webhook port.
        await web.TCPSite(self._runner, host or "0.0.0.0", int(port), reuse_port=True).start()
        self.health.start_heartbeat()
        bound = self._runner.addresses[0]
        return f"http://{bound[0]}:{bound[1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def serve_in_thread(health: Health, listen: str) -> Callable[[], None]:
    """The listener on an event loop of its own, in a daemon thread (for `jobs start`, whose
    scheduler blocks the main thread). Returns a function that stops it."""
    import threading

    loop = asyncio.new_event_loop()
    listener = HealthListener(health)
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(listener.start(listen))
        except BaseException as error:  # noqa: BLE001 - reported to the caller
            failure.append(error)
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(listener.stop())
        loop.run_until_complete(health.close())
        loop.close()

    thread = threading.Thread(target=run, name="health-listener", daemon=True)
    thread.start()
    started.wait(30)
    if failure:
        raise failure[0]

    def stop() -> None:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    return stop
