"""Outages and many workers, as production meets them (issue "Workers and outages"):

- `sticktionary run --workers 3` (the supervisor itself) on PostgreSQL and Redis, players pressing
  buttons for 30 s, one worker killed mid-run: no press answered twice, no update lost, none with
  replies undelivered;
- Redis (a server of the test's own) stopped for 10 s mid-play: nothing lost, every chat answered
  within 10 s of Redis coming back, and the log says so once;
- Telegram answering 500s and 429s for 30 s: a command's reply and an outbox notice each reach
  their chat exactly once afterwards, within the one attempt budget;
- PostgreSQL (a private server of the test's own, never the shared one) stopped for 10 s: nothing
  lost, and a few log lines for it.

`STICKTIONARY_OUTAGE_SECONDS` lengthens the outages and the play (default: the sizes above).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest
from sqlmodel import Session, col, select

from bots.messages.catalogue import catalogue
from bots.screens.help import rule_terms
from offline.demo_pack import PACK_DIR, load_demo_pack
from offline.oracle import database_oracle
from offline.sandbox import Sandbox
from offline.sandbox.players import AutoPlayer, SandboxPlayer
from offline.simulation import demo_vocabulary
from storage.db import make_engine
from storage.migrate import upgrade
from storage.models import InboxStatus, InboxUpdate, OutboxMessage
from storage.settings import Settings
from tests.bots_world import TOKEN, running_bot
from tests.processes import handled_in, shared_redis_url

ROOT = Path(__file__).resolve().parent.parent
SCALE = float(os.environ.get("STICKTIONARY_OUTAGE_SECONDS", "0") or 0) / 10 or 1.0  # 1.0: the sizes above
BOT = {"token": "5001:outage-a", "framework": "ptb", "languages": ["en"], "name": "a"}
SECRET = "outage-secret"
DEFAULT_RULES = rule_terms(Settings(_env_file=None))  # the help text states the rules


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _required(what: str, reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required under CI: {reason}")
    pytest.skip(f"{what}: {reason}")


class Command:
    """A `sticktionary` command in a process of its own, its stderr kept in a log file."""

    def __init__(self, args: list[str], env: dict, log: Path):
        self.args, self.env, self.log = args, env, log
        self.process: asyncio.subprocess.Process | None = None
        self._keep: asyncio.Task | None = None

    async def start(self, ready: bytes, count: int = 1) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from sticktionary.cli import app; app()", *self.args, cwd=ROOT, env=self.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        seen = 0
        with self.log.open("ab") as out:
            while seen < count:
                line = await asyncio.wait_for(self.process.stderr.readline(), 180)
                if not line:
                    raise RuntimeError(f"{self.args} died while starting; see {self.log}")
                out.write(line)
                seen += ready in line
        self._keep = asyncio.create_task(self._keep_log())

    async def _keep_log(self) -> None:
        with self.log.open("ab") as out:
            while line := await self.process.stderr.readline():
                out.write(line)
                out.flush()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 40)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._keep is not None:
            await self._keep


def _environment(db_url: str, api: str, tmp_path: Path, **extra: str) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("STICKTIONARY_")}
    env.update({"STICKTIONARY_DATABASE_URL": db_url, "STICKTIONARY_TELEGRAM_API": api,
                "STICKTIONARY_STICKER_ROOT": str(PACK_DIR), "STICKTIONARY_MEDIA_CACHE": str(tmp_path / "media"),
                "STICKTIONARY_GOLD_RATE": "0", "STICKTIONARY_MODERATORS": "[]", "STICKTIONARY_BOTS": json.dumps([BOT])})
    env.update(extra)
    return env


def _players(db, client, users: range, seed: int) -> list[AutoPlayer]:
    oracle, vocabulary, rng = database_oracle(db), demo_vocabulary(), random.Random(seed)
    return [AutoPlayer(SandboxPlayer(client, BOT["token"], user, f"p{user}", "en",
                                     wait_finished=handled_in(db, BOT["name"])), "en", oracle, vocabulary,
                       random.Random(rng.random()), skill=0.6) for user in users]


async def _play_until(auto: AutoPlayer, deadline: float) -> None:
    await auto.join()
    while time.monotonic() < deadline:
        try:
            await auto.step()
        except LookupError:
            await auto.player.send("/play")


async def _outage_mid_play(client, players: list[AutoPlayer], stop, start, seconds: float) -> dict[int, float]:
    """Players play, the dependency goes away (`stop`), every player sends /help meanwhile (their
    updates must wait, not be lost), it comes back (`start`) after `seconds`, and the players play
    on. Returns how long after the return each player's /help was answered."""
    t = catalogue("en")
    await asyncio.gather(*(_play_until(a, time.monotonic() + 5) for a in players))
    stop()
    sent_at = {}
    for auto in players:
        sent_at[auto.player.user_id] = len(await auto.player.transcript())
        await client.post("/sim/message", json={"token": BOT["token"], "user_id": auto.player.user_id,
                                                 "text": "/help"})
    await asyncio.sleep(seconds)
    start()
    back = time.monotonic()
    answered: dict[int, float] = {}
    while len(answered) < len(players) and time.monotonic() - back < 60:
        for auto in players:
            user = auto.player.user_id
            if user not in answered:
                entries = (await auto.player.transcript())[sent_at[user]:]
                if any(e["by"] == "bot" and (e.get("text") or "").startswith(t("help", **DEFAULT_RULES)) for e in entries):
                    answered[user] = round(time.monotonic() - back, 2)
        await asyncio.sleep(0.1)
    await asyncio.gather(*(_play_until(a, time.monotonic() + 5) for a in players))
    return answered


def _inbox(db) -> dict[int, tuple[str, str | None]]:
    with Session(db) as session:
        return {update_id: (status, error) for update_id, status, error in session.exec(
            select(InboxUpdate.update_id, InboxUpdate.status, InboxUpdate.error)
            .where(InboxUpdate.bot_key == BOT["name"])).all()}


async def _quiet(db, timeout: float = 120) -> None:
    """Until nothing waits in the inbox or the outbox."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Session(db) as session:
            busy = session.exec(select(InboxUpdate.update_id).where(col(InboxUpdate.status).in_(
                (InboxStatus.RECEIVED, InboxStatus.HANDLED))).limit(1)).first()
            queued = session.exec(select(OutboxMessage.id).where(col(OutboxMessage.status).in_(
                ("pending", "sending"))).limit(1)).first()
        if busy is None and queued is None:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("work still waiting")


def _assert_nothing_lost(db, given: dict) -> None:
    rows = _inbox(db)
    assert set(rows) == set(given["handed_out"]) == set(range(1, given["last_update_id"] + 1))
    assert {status for status, _ in rows.values()} <= {InboxStatus.DONE, InboxStatus.SKIPPED}
    dropped = {update_id: error for update_id, (_, error) in rows.items() if error}
    assert not dropped, dropped  # no update failed, no reply was dropped


# ---------------------------------------------------------------- run --workers 3
async def _three_workers(db, tmp_path: Path, redis_url: str) -> None:
    load_demo_pack(db)
    port = _free_port()
    sandbox = Sandbox(rate_limits=True, seed=11, webhook_connections="new")  # spread over the workers
    sandbox.add_bot(BOT["token"], "outage_a_bot")
    api = await sandbox.start()
    env = _environment(db.url.render_as_string(hide_password=False), api, tmp_path,
                       STICKTIONARY_REDIS_URL=redis_url, STICKTIONARY_WEBHOOK_SECRET=SECRET,
                       STICKTIONARY_WEBHOOK_URL=f"http://127.0.0.1:{port}",
                       STICKTIONARY_WEBHOOK_LISTEN=f"127.0.0.1:{port}")
    supervisor = Command(["run", "--workers", "3"], env, tmp_path / "workers.log")
    client = httpx.AsyncClient(base_url=api, timeout=60)
    killed = []
    try:
        await supervisor.start(b"is running", count=3)
        players = _players(db, client, range(71_001, 71_009), seed=3)
        deadline = time.monotonic() + 30 * SCALE

        async def kill_one_worker() -> None:
            await asyncio.sleep(12 * SCALE)
            workers = psutil.Process(supervisor.process.pid).children()
            assert len(workers) == 3
            victim = workers[1]
            victim.send_signal(signal.SIGKILL)
            killed.append(victim.pid)

        await asyncio.gather(kill_one_worker(), *(_play_until(a, deadline) for a in players))
        await _quiet(db)
        # Bursts: three commands of one chat at once reach different workers; each is answered once, in order.
        t = catalogue("en")
        me = t("me_title", nickname="").strip()
        starts = {a.player.user_id: len(await a.player.transcript()) for a in players}

        async def burst(user: int) -> None:
            for command in ("/help", "/me", "/help") * 2:  # sent one after another, handled meanwhile
                await client.post("/sim/message", json={"token": BOT["token"], "user_id": user, "text": command})

        await asyncio.gather(*(burst(user) for user in starts))
        await _quiet(db)
        bursts = {}
        for auto in players:
            answers = [e.get("text") or "" for e in (await auto.player.transcript())[starts[auto.player.user_id]:]
                       if e["by"] == "bot" and not e.get("edit")]
            helped = t("help", **DEFAULT_RULES)
            bursts[auto.player.user_id] = ["help" if a.startswith(helped) else "me" if a.startswith(me) else a[:30]
                                           for a in answers]
        presses = 0
        for auto in players:
            presses += sum(1 for entry in await auto.player.transcript() if "callback_id" in entry)
        stats = (await client.get("/sim/stats")).json()["result"]
        given = (await client.get("/sim/updates", params={"token": BOT["token"]})).json()["result"]
    finally:
        await supervisor.stop()
        await client.aclose()
        await sandbox.stop()
    log = (tmp_path / "workers.log").read_text(errors="replace")
    print("FIGURES workers", json.dumps({"presses": presses, "updates": given["last_update_id"],
                                         "press_answered_again": stats.get("press_answered_again", 0),
                                         "not_modified": sum(v for k, v in stats.items() if k.startswith("not_modified")),
                                         "killed_worker": bool(killed)}))
    assert all(answers == ["help", "me", "help"] * 2 for answers in bursts.values()), bursts
    assert killed and "starting it again" in log  # the supervisor replaced the killed worker
    assert presses > 50, presses
    assert stats.get("press_answered_again", 0) == 0, stats
    assert stats.get("webhook_undelivered", 0) == 0, stats
    assert stats.get("rate_limited", 0) == 0, stats  # pacing held across the workers
    _assert_nothing_lost(db, given)
    assert "Traceback" not in log, log[-3000:]
    assert "dropped" not in log and "could not be delivered" not in log


@pytest.mark.postgres
def test_run_workers_3_answers_each_press_once_even_with_a_worker_killed(db, tmp_path):
    if db.dialect.name != "postgresql":
        pytest.skip("several processes on one database: PostgreSQL")
    asyncio.run(asyncio.wait_for(_three_workers(db, tmp_path, shared_redis_url()), 600))


# ---------------------------------------------------------------- Redis away for 10 s
class PrivateRedis:
    """A redis-server of the test's own, on its own port, without persistence."""

    def __init__(self, port: int):
        self.port = port
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            _required("redis-server", "not installed")
        self.process = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


async def _redis_outage(db, tmp_path: Path) -> None:
    load_demo_pack(db)
    redis_server = PrivateRedis(_free_port())
    redis_server.start()
    sandbox = Sandbox(rate_limits=True, seed=12)
    sandbox.add_bot(BOT["token"], "outage_a_bot")
    api = await sandbox.start()
    env = _environment(db.url.render_as_string(hide_password=False), api, tmp_path,
                       STICKTIONARY_REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/0")
    bot = Command(["run"], env, tmp_path / "bot.log")
    client = httpx.AsyncClient(base_url=api, timeout=60)
    try:
        await bot.start(b"is running")
        players = _players(db, client, range(72_001, 72_006), seed=4)
        answered = await _outage_mid_play(client, players, redis_server.stop, redis_server.start, 10 * SCALE)
        await _quiet(db)
        given = (await client.get("/sim/updates", params={"token": BOT["token"]})).json()["result"]
    finally:
        await bot.stop()
        redis_server.stop()
        await client.aclose()
        await sandbox.stop()
    print("FIGURES redis", json.dumps({"updates": given["last_update_id"], "answered_after_back_s": answered}))
    assert len(answered) == len(players) and max(answered.values()) <= 10, answered
    _assert_nothing_lost(db, given)
    log = (tmp_path / "bot.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert log.count("Redis is unreachable") == 1 and log.count("Redis is back") == 1, log[-3000:]


@pytest.mark.postgres
def test_a_redis_outage_delays_replies_and_loses_none(db, tmp_path):
    if db.dialect.name != "postgresql":
        pytest.skip("the production shape: PostgreSQL")
    asyncio.run(asyncio.wait_for(_redis_outage(db, tmp_path), 600))


# ---------------------------------------------------------------- Telegram answering 500 and 429
@pytest.mark.asyncio
@pytest.mark.parametrize("framework", ["ptb", "aiogram"])
async def test_a_telegram_outage_delivers_each_reply_and_notice_once_within_the_budget(game_db, tmp_path,
                                                                                       framework, caplog):
    async with running_bot(game_db, tmp_path, framework) as world:
        runtime = world.shell.runtime
        group = -1009
        await world.client.post("/sim/group", json={"token": TOKEN, "chat_id": group})
        fan = world.player(81)
        await fan.send("/help")  # the chat exists; its first answer is not what is counted
        await world.client.post("/sim/faults", json={"error_5xx": 0.5, "error_429": 0.5, "retry_after": 5})
        outbox_worker = asyncio.create_task(runtime.run_outbox(interval=0.2))
        try:
            started = time.monotonic()
            before = len(await fan.transcript())
            await world.client.post("/sim/message", json={"token": TOKEN, "user_id": 81, "text": "/help"})
            payload = {"language": "en", "period": "day", "since": "", "rows": [[1, "P7", 3]]}
            with world.game.db.write() as session:
                world.game.outbox.enqueue(session, "outage-notice", "leaderboard", payload, chat_id=group)
            await asyncio.sleep(30 * SCALE - (time.monotonic() - started))
            await world.client.post("/sim/faults", json={"error_5xx": 0.0, "error_429": 0.0})
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                posts = [e for e in world.sandbox.chats[(TOKEN, group)].transcript if e["by"] == "bot"]
                replies = [e for e in (await fan.transcript())[before:] if e["by"] == "bot"]
                if posts and replies:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(1)  # a repeat would show by now
            posts = [e for e in world.sandbox.chats[(TOKEN, group)].transcript if e["by"] == "bot"]
            replies = [e for e in (await fan.transcript())[before:] if e["by"] == "bot"]
        finally:
            outbox_worker.cancel()
        stats = (await world.client.get("/sim/stats")).json()["result"]
    print("FIGURES telegram", framework, json.dumps({
        "calls_to_the_group": stats[f"tries:{group}"], "faults_5xx": stats.get("fault:5xx"),
        "faults_429": stats.get("fault:429"), "replies": len(replies), "posts": len(posts)}))
    assert len(replies) == 1 and replies[0]["text"].startswith(catalogue("en")("help", **DEFAULT_RULES)), replies
    assert len(posts) == 1, posts
    assert stats.get("fault:5xx", 0) > 0 and stats.get("fault:429", 0) > 0, stats
    # Every call to each chat, faulted or not (429s included); at most 8 of them failed with a 5xx.
    assert stats[f"tries:{group}"] <= 8 + stats["fault:429"], stats
    with Session(game_db) as session:
        notice = session.exec(select(OutboxMessage).where(OutboxMessage.dedupe_key == "outage-notice")).one()
    print("FIGURES telegram", framework, "notice attempts", notice.attempts)
    assert notice.status == "sent" and notice.attempts <= 8
    outage_lines = [r.getMessage() for r in caplog.records if r.name == "sticktionary.outage"]
    assert len(outage_lines) <= 4, outage_lines  # it began (and ended) once or twice: not once per attempt


# ---------------------------------------------------------------- PostgreSQL away for 10 s
class PrivatePostgres:
    """A PostgreSQL cluster of the test's own in a temporary folder (never the shared server)."""

    def __init__(self):
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not found:
            _required("PostgreSQL's server binaries", "none under /usr/lib/postgresql")
        self.bin = found[-1].parent
        self.port = _free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="sticktionary-pg-"))
        self.data = self.folder / "data"
        self.as_postgres = os.geteuid() == 0  # initdb refuses root: run it as the postgres user
        if self.as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w", "-o",
                  f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        with_suppressed = subprocess.run([str(self.bin / "pg_ctl"), "-D", str(self.data), "status"],
                                         capture_output=True)
        if with_suppressed.returncode == 0:
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


async def _postgres_outage(tmp_path: Path) -> None:
    server = PrivatePostgres()
    try:
        server.start()
        db = make_engine(server.url)
        upgrade(db)
        load_demo_pack(db)
        sandbox = Sandbox(rate_limits=True, seed=13)
        sandbox.add_bot(BOT["token"], "outage_a_bot")
        api = await sandbox.start()
        bot = Command(["run"], _environment(server.url, api, tmp_path), tmp_path / "bot.log")
        client = httpx.AsyncClient(base_url=api, timeout=60)
        try:
            await bot.start(b"is running")
            players = _players(db, client, range(73_001, 73_006), seed=5)
            await asyncio.gather(*(_play_until(a, time.monotonic() + 5) for a in players))
            lines_before = len((tmp_path / "bot.log").read_text(errors="replace").splitlines())

            def back() -> None:
                server.start()
                db.dispose()  # the test's own connections were cut too

            answered = await _outage_mid_play(client, players, server.stop, back, 10 * SCALE)
            assert len(answered) == len(players), answered
            await _quiet(db)
            given = (await client.get("/sim/updates", params={"token": BOT["token"]})).json()["result"]
        finally:
            await bot.stop()
            await client.aclose()
            await sandbox.stop()
        _assert_nothing_lost(db, given)
        db.dispose()
    finally:
        server.remove()
    log = (tmp_path / "bot.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    during = [line for line in log.splitlines()[lines_before:] if " WARNING " in line or " ERROR " in line]
    print("FIGURES postgres", json.dumps({"updates": given["last_update_id"], "log_lines": during}))
    assert 1 <= len(during) <= 4, during
    assert any("the database is back" in line for line in during), during


def test_a_postgresql_outage_loses_nothing_and_says_so_in_a_few_lines(tmp_path):
    asyncio.run(asyncio.wait_for(_postgres_outage(tmp_path), 600))


def test_the_chat_locks_given_are_the_ones_used_even_when_no_lane_is_held():
    """A ChatLocks holding no lane has length 0: `chat_locks or ChatLocks()` once replaced the one
    shared through Redis by a process-local one, and several workers then did a chat's updates at once."""
    from bots.inbox import ChatLocks
    from bots.runtime import BotRuntime

    shared = ChatLocks(redis=object())
    assert shared.lanes_in_use() == 0
    assert BotRuntime("a", None, None, None, None, chat_locks=shared).chat_locks is shared


@pytest.mark.asyncio
@pytest.mark.parametrize("framework", ["ptb", "aiogram"])
async def test_after_an_outage_a_live_screen_is_edited_once_to_its_latest_state(game_db, tmp_path, framework):
    """Three queries typed while Telegram is away: each handled update owes an edit of the same
    label screen; once Telegram is back only the latest is sent, and it shows all three."""
    from tests.test_bots import onboard

    async with running_bot(game_db, tmp_path, framework) as world:
        labeler = world.player(82)
        await onboard(labeler, "en")
        screen = next(e for e in reversed(await labeler.transcript()) if e["by"] == "bot" and e.get("text"))
        assert any(b.startswith("lx:") for b in labeler.buttons(screen)), screen  # a label round: Skip
        queries = ["sleepy monday morning", "need coffee right now", "cannot wake up at all"]
        await world.client.post("/sim/faults", json={"error_5xx": 1.0})
        for query in queries:
            sent = await world.client.post("/sim/message", json={"token": TOKEN, "user_id": 82, "text": query})
            assert sent.status_code == 200, sent.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # all three handled; the latest one's replies owed
            with Session(game_db) as session:
                statuses = dict(session.exec(select(InboxUpdate.update_id, InboxUpdate.status)).all())
            latest_update = max(statuses)
            if len(statuses) >= 6 and statuses[latest_update] == InboxStatus.HANDLED and \
                    InboxStatus.RECEIVED not in statuses.values():
                break
            await asyncio.sleep(0.1)
        assert statuses[latest_update] == InboxStatus.HANDLED, statuses
        before = (await world.client.get("/sim/stats")).json()["result"]
        await world.client.post("/sim/faults", json={"error_5xx": 0.0})
        await _quiet(game_db, 60)
        after = (await world.client.get("/sim/stats")).json()["result"]
        latest = next(e for e in world.sandbox.chats[(TOKEN, 82)].messages.values()
                      if e.get("message_id") == screen["message_id"])
    edits = after.get("ok:editMessageText", 0) - before.get("ok:editMessageText", 0)
    assert edits == 1, (before, after)
    assert all(query in latest["text"] for query in queries), latest["text"]
