"""The one policy that every Bot API call goes through — pacing, 429 waits, outage backoff and the
attempt budget — shaped like python-telegram-bot's `BaseRateLimiter.process_request`.

The policy never retries on its own. A call that fails because Telegram is away raises `Owed`:
the caller keeps what it owes (an update's replies in the inbox, a message in the outbox) and
tries again when `TelegramGate` says the next try is due. So one message is attempted at most
`Settings.delivery.send_attempts` times across every layer, however long the outage, and while Telegram
is away only one call at a time probes it instead of every waiting message spending its budget.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from bots.transport.errors import OUTAGE_ERRORS, Owed, RetryAfter, TelegramError
from bots.transport.pacing import Pacer
from core import metrics
from storage.outage import Outage, outage

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_RETRY_AFTER = 300.0  # seconds: a longer 429 wait than this is waited in several goes


class TelegramGate:
    """Whether this bot may try Telegram now. After a failure that means Telegram is away, calls
    are held back until the next try is due, with the pause doubling while the outage lasts; the
    first success opens the gate again. One per bot and process."""

    def __init__(self, name: str, first_pause: float = 0.5, max_pause: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.outage: Outage = outage(name)
        self.first_pause, self.max_pause, self.clock = first_pause, max_pause, clock
        self.pause = 0.0
        self.next_try = 0.0

    def open(self) -> bool:
        return self.clock() >= self.next_try

    def wait_seconds(self) -> float:
        return max(0.0, self.next_try - self.clock())

    def failed(self, error: BaseException) -> None:
        now = self.clock()
        if self.outage.begin(error) or not self.pause:
            self.pause = self.first_pause
        elif now >= self.next_try:  # a probe failed (not a call already in flight when the gate closed)
            self.pause = min(self.pause * 2, self.max_pause)
        self.next_try = now + self.pause

    def succeeded(self) -> None:
        if self.pause:
            self.pause, self.next_try = 0.0, 0.0
            self.outage.end()


@dataclass
class Attempts:
    """The attempt budget of one message, across every layer that tries it: `used` counts the
    failed tries, so a message is tried at most `limit` times in all (the last try fails it)."""

    used: int = 0
    limit: int = 8

    @property
    def spent(self) -> bool:
        return self.used >= self.limit


class SendPolicy:
    """Every Bot API call of one bot goes through `process_request`."""

    def __init__(self, bot_key: str, pacer: Pacer | None, attempts: int = 8):
        self.bot_key = bot_key
        self.pacer = pacer
        self.attempts = attempts
        self.gate = TelegramGate(f"Telegram (bot {bot_key})")
        self.retry_after_waits = 0  # 429s waited out, for operators

    async def process_request(self, callback: Callable[[], Awaitable[T]], *, chat_id: int | None = None,
                              budget: Attempts | None = None, wait: bool = False) -> T:
        """Make the call once (a 429 is waited out and the call made again: no attempt spent).
        Telegram away: `Owed`. `wait` sits out a closed gate first instead of raising at once (for
        calls with nothing else to do meanwhile, such as setting the webhook at start)."""
        budget = budget if budget is not None else Attempts(limit=self.attempts)
        while True:
            if not self.gate.open():
                if not wait:
                    raise Owed("Telegram is unreachable: waiting for the next try", attempted=False)
                await asyncio.sleep(self.gate.wait_seconds())
                continue
            if chat_id is not None and self.pacer is not None:
                await self.pacer.wait(self.bot_key, chat_id)
            try:
                result = await callback()
            except RetryAfter as error:  # Telegram asked us to slow down: a wait, not a failed attempt
                self.retry_after_waits += 1
                metrics.telegram_failed(self.bot_key, error)
                await asyncio.sleep(min(max(error.seconds, 0.0), MAX_RETRY_AFTER))
                continue
            except OUTAGE_ERRORS as error:
                metrics.telegram_failed(self.bot_key, error)
                budget.used += 1
                self.gate.failed(error)
                if wait and not budget.spent:
                    continue
                raise Owed(f"{type(error).__name__}: {error}", attempted=True) from error
            except TelegramError as error:  # refused for good (400, 401, 403, a migrated chat): the caller decides
                metrics.telegram_failed(self.bot_key, error)
                raise
            self.gate.succeeded()
            return result
