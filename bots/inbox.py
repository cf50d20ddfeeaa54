"""The transactional inbox: updates are stored before Telegram is told we have them, and each is
handled in the same database transaction that marks it handled and keeps its replies.

A chat's updates form a *lane*, handled one at a time in update order. Whoever holds a lane (see
`ChatLocks`) takes its oldest unfinished update: a `received` one is handled now; a `handled` one
was handled by a process that died before delivering its replies, so only the delivery is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select

from bots.log_context import handling_update
from bots.messages.group_privacy import group_safe
from bots.messages.incoming import GUEST_KINDS, Incoming
from bots.messages.replies import Outgoing, decode_outgoing, encode_outgoing
from core import metrics
from storage.db import Database, UnitOfWork, insert_new_rows, is_retryable
from storage.models import InboxStatus, InboxUpdate, utcnow
from storage.outage import REDIS, is_database_outage, outage

log = logging.getLogger(__name__)

_INT64 = 2**63
_UNFINISHED = (InboxStatus.RECEIVED, InboxStatus.HANDLED)
_CHAT_CARRIERS = ("message", "edited_message", "channel_post", "edited_channel_post", "business_message",
                  "edited_business_message", "my_chat_member")


def _int64(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and -_INT64 <= value < _INT64 else None


def update_id_of(update) -> int | None:
    return _int64(update.get("update_id")) if isinstance(update, dict) else None


def chat_key_of(update: dict) -> int:
    """The lane an update belongs to: its chat, or for a button press the chat of the message it was
    on (else the presser), for inline mode its sender. 0 for updates that belong to no chat."""
    for key in _CHAT_CARRIERS:
        message = update.get(key)
        chat = message.get("chat") if isinstance(message, dict) else None
        if isinstance(chat, dict) and _int64(chat.get("id")) is not None:
            return chat["id"]
    for key in ("inline_query", "chosen_inline_result"):  # no chat: the lane of their sender
        body = update.get(key)
        user = body.get("from") if isinstance(body, dict) else None
        if isinstance(user, dict) and _int64(user.get("id")) is not None:
            return user["id"]
    press = update.get("callback_query")
    if isinstance(press, dict):
        message = press.get("message")
        chat = message.get("chat") if isinstance(message, dict) else None
        if isinstance(chat, dict) and _int64(chat.get("id")) is not None:
            return chat["id"]
        user = press.get("from")
        if isinstance(user, dict) and _int64(user.get("id")) is not None:
            return user["id"]
    return 0


@dataclass
class Taken:
    """An update taken from a lane, with what is left of delivering its replies."""

    update_id: int
    outgoing: Outgoing | None
    received_at: datetime
    send_attempts: int = 0  # spent on its replies so far (the one attempt budget)
    replies_sent: int = 0  # replies Telegram already has, in order
    resumed: bool = False  # handled earlier (by a process that died, or before an outage), not just now
    outcome: str | None = None  # handled just now: ok, failed or skipped
    handler_seconds: float = 0.0  # how long handling it took


class Inbox:
    """One bot's inbox. Its methods block (database work): run them on the game threads."""

    def __init__(self, db: Database, bot_key: str, parse: Callable[[dict], Incoming | None],
                 handle: Callable[[Incoming, UnitOfWork], Outgoing],
                 failure: Callable[[Incoming, UnitOfWork], Outgoing | None]):
        self.db = db
        self.bot_key = bot_key
        self.parse = parse  # raw update -> Incoming, or None for one that is no move in the game
        # Both run in the update's unit of work, which they are handed: everything they change is
        # committed with the update's row, or not at all.
        self.handle = handle
        self.failure = failure  # what the player is told when handling raised

    def store(self, updates: Iterable[dict]) -> list[int]:
        """Store updates durably (one transaction); returns the lane of each one that is new.
        Updates without a usable update_id cannot be stored and are dropped with a log line."""
        rows, now = [], utcnow()
        for raw in map(group_safe, updates):
            if raw is None:
                continue  # a group's conversation: never stored (bots/messages/group_privacy.py)
            update_id = update_id_of(raw)
            if update_id is None:
                log.warning("bot %s: an update without a usable update_id was dropped", self.bot_key)
                continue
            rows.append({"bot_key": self.bot_key, "update_id": update_id, "chat_key": chat_key_of(raw),
                         "payload": raw, "status": InboxStatus.RECEIVED, "received_at": now})
        if not rows:
            return []
        table = InboxUpdate.__table__
        with self.db.write() as session:
            new = insert_new_rows(session, table, rows, ["bot_key", "update_id"], returning=[table.c.chat_key])
        return [lane for (lane,) in new]

    def take_next(self, lane: int, after: int | None = None) -> Taken | None:
        """Handle the lane's oldest unfinished update (after update `after`: those up to it are owed
        replies the caller already holds) if it is not handled yet; returns it with the replies
        still to deliver, or None when there is none. Call it holding the lane."""
        for attempt in range(4):
            try:
                taken = self._take_next(lane, after)
            except Exception as error:
                if is_retryable(error) and attempt < 3:
                    continue  # the database aborted us to break a deadlock: the whole unit again
                raise
            if taken is not None:  # committed: counted once
                metrics.update_handled(self.bot_key, taken.outcome, taken.handler_seconds)
            return taken
        return None  # pragma: no cover

    def _oldest_unfinished(self, lane: int, after: int | None):
        query = select(InboxUpdate).where(InboxUpdate.bot_key == self.bot_key, InboxUpdate.chat_key == lane,
                                          col(InboxUpdate.status).in_(_UNFINISHED))
        if after is not None:
            query = query.where(InboxUpdate.update_id > after)
        return query.order_by(InboxUpdate.update_id).limit(1)

    def _take_next(self, lane: int, after: int | None) -> Taken | None:
        # A read first: an empty lane (the common last look) costs no write transaction.
        with self.db.read() as session:
            if session.exec(self._oldest_unfinished(lane, after).with_only_columns(InboxUpdate.update_id)
                            ).first() is None:
                return None
        with self.db.unit() as unit, unit.read() as session:
            row = session.exec(self._oldest_unfinished(lane, after).with_for_update()).first()
            if row is None:
                return None
            with handling_update(self.bot_key, row.update_id):  # what the log says meanwhile
                return self._take(unit, session, row)

    def _take(self, unit: UnitOfWork, session, row: InboxUpdate) -> Taken:
        """The row's update handled in `unit`, the transaction `session` belongs to and that marks
        the row (or, handled before, its replies)."""
        if row.status == InboxStatus.HANDLED:  # handled before a crash or an outage: only delivery is left
            return Taken(row.update_id, decode_outgoing(row.replies) if row.replies else None, row.received_at,
                         row.send_attempts, row.replies_sent, resumed=True)
        incoming = self._parsed(row.payload)
        if incoming is None:
            row.status, row.done_at = InboxStatus.SKIPPED, utcnow()
            session.add(row)
            return Taken(row.update_id, None, row.received_at, outcome="skipped")
        started = time.perf_counter()
        try:
            with unit.write():  # a savepoint: a handler that raises leaves nothing behind
                outgoing = self.handle(incoming, unit)
        except Exception as error:  # noqa: BLE001 - a bug must not wedge the lane: fail this update only
            if is_retryable(error) or is_database_outage(error):
                raise  # nothing of it is kept: the update is handled again (now, or once the database is back)
            log.exception("bot %s: update %s failed", self.bot_key, row.update_id)
            outgoing = self.failure(incoming, unit)
            row.status, row.error = InboxStatus.FAILED, f"{type(error).__name__}: {error}"[:500]
        else:
            row.status = InboxStatus.HANDLED
        if incoming.kind in GUEST_KINDS:  # inline mode: nothing about the sender is kept once it is handled
            row.payload = {"update_id": row.update_id}
        row.handled_at = utcnow()
        row.replies = encode_outgoing(outgoing) if outgoing is not None else None
        session.add(row)
        return Taken(row.update_id, outgoing, row.received_at, outcome="ok" if row.status == InboxStatus.HANDLED
                     else "failed", handler_seconds=time.perf_counter() - started)

    def _parsed(self, payload: dict) -> Incoming | None:
        try:
            return self.parse(payload)
        except Exception as error:  # noqa: BLE001 - an update no framework can read is skipped, once
            log.warning("bot %s: skipped an update that could not be read (%s: %s)", self.bot_key,
                        type(error).__name__, str(error)[:200])
            return None

    def mark_done(self, update_id: int, dropped: str | None = None) -> None:
        """Its replies are delivered, or `dropped` on purpose (the reason is kept on the row)."""
        values = {"status": InboxStatus.DONE, "done_at": utcnow(), "replies": None}
        if dropped is not None:
            values["error"] = f"replies dropped: {dropped}"[:500]
        with self.db.write() as session:
            session.execute(update(InboxUpdate).where(
                InboxUpdate.bot_key == self.bot_key, InboxUpdate.update_id == update_id,
                col(InboxUpdate.status).in_((InboxStatus.HANDLED, InboxStatus.FAILED)),
                col(InboxUpdate.done_at).is_(None)).values(**values))

    def still_owed(self, update_id: int, send_attempts: int, replies_sent: int) -> None:
        """Delivery stopped short (Telegram away): what it spent and reached, for whoever goes on."""
        with self.db.write() as session:
            session.execute(update(InboxUpdate).where(
                InboxUpdate.bot_key == self.bot_key, InboxUpdate.update_id == update_id,
                col(InboxUpdate.done_at).is_(None)).values(send_attempts=send_attempts, replies_sent=replies_sent))

    def waiting_lanes(self, older_than: timedelta = timedelta(0), limit: int = 1000) -> list[int]:
        """Lanes with unfinished updates received at least `older_than` ago (left by a restart or
        a dead worker)."""
        cutoff = utcnow() - older_than
        with self.db.read() as session:
            return list(session.exec(
                select(InboxUpdate.chat_key).where(
                    InboxUpdate.bot_key == self.bot_key, col(InboxUpdate.status).in_(_UNFINISHED),
                    InboxUpdate.received_at <= cutoff)
                .group_by(InboxUpdate.chat_key).limit(limit)).all())


class LaneUnavailable(Exception):
    """The lane's lock cannot be had (Redis is away): its updates wait in the inbox."""


class HeldLane:
    """A held lane. `lost` turns true when the lock could not be kept (Redis away): the holder then
    finishes the update in hand and stops, since another worker may take the lane once Redis is back."""

    lost = False


class ChatLocks:
    """One update of a chat at a time: within this process (asyncio locks) and, with Redis, across
    every process serving the bot (a redis-py Lock per chat, as aiogram's RedisEventIsolation).

    While Redis is away no lane is taken at all: doing a chat's updates without the shared lock
    could do them twice or out of order in two workers, whereas waiting only delays them (they are
    safe in the inbox, and the sweep takes them up once Redis answers)."""

    def __init__(self, redis=None, timeout: float = 10.0):
        self.redis = redis
        self.timeout = timeout
        self._local: dict[tuple[str, int], list] = {}  # lane -> [lock, holders and waiters]
        self._outage = outage(REDIS)

    @contextlib.asynccontextmanager
    async def hold(self, bot_key: str, lane: int):
        key = (bot_key, lane)
        entry = self._local.setdefault(key, [asyncio.Lock(), 0])
        entry[1] += 1
        held = HeldLane()
        try:
            async with entry[0]:
                if self.redis is None:
                    yield held
                    return
                lock = self.redis.lock(f"sticktionary:lane:{bot_key}:{lane}", timeout=self.timeout, sleep=0.01,
                                       blocking_timeout=self.timeout * 2)
                try:
                    acquired = await lock.acquire()
                except Exception as error:  # noqa: BLE001 - Redis away: the updates wait, nothing is wrong
                    self._outage.begin(error)
                    self._outage.waiting((bot_key, lane))
                    raise LaneUnavailable(f"lane {lane} of bot {bot_key}: Redis is unreachable") from None
                self._outage.end()
                if not acquired:
                    raise TimeoutError(f"lane {lane} of bot {bot_key} stayed locked")
                # The lock's timeout only frees the lanes of a dead process: while this one lives, a
                # long drain (many updates, paced replies) keeps it, or another worker would take the
                # lane and deliver the update in flight a second time.
                renewing = asyncio.create_task(self._keep(lock, held))
                try:
                    yield held
                finally:
                    renewing.cancel()
                    with contextlib.suppress(Exception):  # expired or Redis away meanwhile: nothing to release
                        await lock.release()
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._local[key]

    async def _keep(self, lock, held: HeldLane) -> None:
        while True:
            await asyncio.sleep(self.timeout / 3)
            try:
                await lock.reacquire()  # the full timeout again, from now
            except Exception as error:  # noqa: BLE001 - Redis away or the lock lost: stop after this update
                from redis.exceptions import LockError

                held.lost = True
                if isinstance(error, LockError):
                    log.warning("a chat's lock ran out while held (%s): its lane is left to the next holder", error)
                else:
                    self._outage.begin(error)
                return

    def lanes_in_use(self) -> int:
        """Lanes this process holds or waits for."""
        return len(self._local)
