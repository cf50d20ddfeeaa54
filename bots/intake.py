"""Intake: updates from Telegram (long polling, or the webhook through the shells' `feed`) into the
inbox (bots/inbox.py), then each chat's updates handled one at a time, in order, in its *lane*,
with their replies handed to delivery (bots/delivery/owed.py) in the same order.

Replies Telegram cannot take now stay owed: the lane goes on handling the chat's next updates
meanwhile and delivers the owed replies, oldest first, as soon as Telegram answers again. The lane
is held throughout (`ChatLocks`, shared through Redis by several workers), so nothing else
delivers to that chat meanwhile."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta

from bots.delivery import OwedReplies
from bots.game_threads import GameThreads
from bots.inbox import ChatLocks, Inbox, LaneUnavailable, Taken, update_id_of
from bots.transport import RetryAfter, Sender, TelegramError, TelegramGate, Unauthorized
from core import metrics
from storage.outage import DATABASE, outage

log = logging.getLogger(__name__)

REMEMBERED_UPDATES = 10_000  # how many finished update ids `FinishedUpdates` still knows


class FinishedUpdates:
    """The update ids whose replies were all delivered, the most recent ones only, for whoever waits
    on one (the demo, the play page's simulated players, the tests)."""

    def __init__(self, remembered: int = REMEMBERED_UPDATES):
        self.remembered = remembered
        self._finished: OrderedDict[int, None] = OrderedDict()
        self._waiting: dict[int, list[asyncio.Future]] = {}

    def __contains__(self, update_id: int) -> bool:
        return update_id in self._finished

    def __len__(self) -> int:
        return len(self._finished)

    def waiters(self) -> int:
        return sum(len(waiters) for waiters in self._waiting.values())

    def mark(self, update_id: int) -> None:
        self._finished[update_id] = None
        if len(self._finished) > self.remembered:
            self._finished.popitem(last=False)
        for waiter in self._waiting.pop(update_id, ()):
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, update_id: int, timeout: float = 30) -> None:
        """Until the update has been handled and every reply to it delivered (it may already be)."""
        if update_id in self._finished:
            return
        waiter = asyncio.get_running_loop().create_future()
        waiters = self._waiting.setdefault(update_id, [])
        waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        finally:
            if not waiter.done() or waiter.cancelled():
                waiters.remove(waiter)
                if not waiters and self._waiting.get(update_id) is waiters:
                    del self._waiting[update_id]


class Intake:
    def __init__(self, bot_key: str, inbox: Inbox, chat_locks: ChatLocks, game_threads: GameThreads,
                 replies: OwedReplies, gate: TelegramGate, on_trouble: Callable[..., None]):
        self.bot_key = bot_key
        self.inbox = inbox
        self.chat_locks = chat_locks
        self.game_threads = game_threads
        self.replies = replies
        self.gate = gate  # Telegram's availability for this bot: while it is closed, owed replies wait
        self.on_trouble = on_trouble  # (error, message, *args): an outage said once, or a logged failure
        self.receiving = True
        self._database = outage(DATABASE)
        self._scheduled: set[int] = set()  # lanes with a drain waiting for the lane
        self._drains: set[asyncio.Task] = set()

    async def receive(self, updates: list[dict]) -> None:
        """Store updates durably, then have them handled in the background. Telegram may be told
        we have them (the next getUpdates offset, the webhook's 200) once this returns."""
        if not self.receiving:
            raise RuntimeError("the bot is stopping")
        lanes = await self.game_threads.run(self.inbox.store, updates)
        metrics.updates_received(self.bot_key, len(updates), len(lanes))
        for lane in lanes:
            self.schedule(lane)

    def schedule(self, lane: int) -> None:
        if lane in self._scheduled:
            return  # a drain of this lane is already waiting: it will take this update too
        self._scheduled.add(lane)
        task = asyncio.create_task(self._drain(lane))
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _drain(self, lane: int) -> None:
        """Handle a lane's unfinished updates in order and deliver their replies in the same order."""
        holding = False
        run = self.game_threads.run
        try:
            async with self.chat_locks.hold(self.bot_key, lane) as held:
                holding = True
                self._scheduled.discard(lane)  # from now on, a new update needs a drain of its own
                owed: list[Taken] = []
                after = None
                while not held.lost:
                    taken = await run(self.inbox.take_next, lane, after)
                    self._database.end()
                    if taken is not None:
                        after = taken.update_id
                        if taken.outgoing is None and not owed:
                            await self.replies.finish(taken)
                            continue
                        owed.append(taken)
                        if not self.gate.open():
                            continue  # Telegram is away: handle what else the chat sent, deliver later
                    elif not owed:
                        return
                    owed = await self.replies.deliver(owed)
                    if owed and taken is None:  # nothing new to handle: wait for the next try
                        await asyncio.sleep(min(max(self.gate.wait_seconds(), 0.05), 1.0))
        except LaneUnavailable:
            pass  # Redis is away (said once): the updates wait in the inbox for the sweep
        except Exception as error:  # noqa: BLE001 - logged; the sweep takes the lane up again
            self.on_trouble(error, "bot %s: lane %s stopped", self.bot_key, lane)
        finally:
            if not holding:  # never got the lane: not waiting for it any more
                self._scheduled.discard(lane)

    async def sweep(self, older_than: float = 0.0) -> int:
        """Drain every lane with unfinished updates (received before a restart, or by a worker that
        died); returns how many lanes."""
        lanes = await self.game_threads.run(self.inbox.waiting_lanes, timedelta(seconds=older_than))
        self._database.end()
        for lane in lanes:
            self.schedule(lane)
        return len(lanes)

    async def run_sweeper(self, interval: float = 2.0) -> None:
        while True:
            try:
                await self.sweep(older_than=interval)
            except Exception as error:  # noqa: BLE001
                self.on_trouble(error, "bot %s: inbox sweep failed", self.bot_key)
            await asyncio.sleep(interval)

    async def poll(self, sender: Sender, timeout: int = 10) -> None:
        """Long polling: each batch is stored before the next getUpdates call acknowledges it."""
        offset = None
        while self.receiving:
            try:
                updates = await sender.get_updates(offset, timeout)
            except RetryAfter as wait:
                await asyncio.sleep(min(wait.seconds, 60))
                continue
            except Unauthorized:
                log.error("bot %s: Telegram refuses its token (401); it stops polling. Check the token in "
                          "STICKTIONARY_BOTS", self.bot_key)
                return
            except (TelegramError, OSError) as error:
                metrics.telegram_failed(self.bot_key, error, "getUpdates")
                log.warning("bot %s: getUpdates failed (%s); trying again", self.bot_key, type(error).__name__)
                await asyncio.sleep(1)
                continue
            if not self.receiving:
                return  # not stored, so not acknowledged: Telegram gives them again after the restart
            ids = [i for i in (update_id_of(u) for u in updates) if i is not None]
            if updates:
                try:
                    await self.receive(updates)
                except Exception as error:  # noqa: BLE001 - not stored, so not acknowledged: asked for again
                    self.on_trouble(error, "bot %s: could not store %d updates; asking for them again", self.bot_key,
                                    len(updates))
                    await asyncio.sleep(1)
                    continue
            if ids:
                offset = max(ids) + 1

    async def finish_in_flight(self, timeout: float) -> None:
        """Let the lanes being drained finish (up to `timeout`), then stop the rest."""
        if self._drains:
            done, pending = await asyncio.wait(set(self._drains), timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
