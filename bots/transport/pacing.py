"""Pacing what a bot sends under Telegram's limits: about one message a second per private chat,
20 a minute per group, 30 a second overall, per bot token.

`LocalPacer` keeps the buckets in this process (one process per bot). `RedisPacer` keeps them in
Redis, so the limits hold across every process serving the bot (several webhook workers), with
the `limits` package's moving windows. While Redis is away it paces with a `LocalPacer` of its own
(the limits then hold per process, a little loose across several) and says so once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from aiolimiter import AsyncLimiter

from storage.outage import REDIS, outage

PER_CHAT = (3, 3.5)  # (burst, seconds): a little under one message a second per private chat
PER_GROUP = (18, 60)  # a little under Telegram's 20 a minute per group
OVERALL_PER_SECOND = 25  # a little under Telegram's 30 a second per bot
REDIS_RETRY_SECONDS = 5.0  # while Redis is away, how often pacing tries it again


class Pacer(Protocol):
    async def wait(self, bot_key: str, chat_id: int) -> None:
        """Return once a message from this bot to this chat may go out (and count it)."""


def is_group(chat_id: int) -> bool:
    return chat_id < 0  # Telegram's group and channel ids are negative


class LocalPacer:
    def __init__(self, per_chat: tuple[int, float] = PER_CHAT, overall_per_second: int = OVERALL_PER_SECOND,
                 per_group: tuple[int, float] = PER_GROUP):
        self.per_chat, self.per_group = per_chat, per_group
        self._chats: dict[int, AsyncLimiter] = {}
        self._overall = AsyncLimiter(overall_per_second, 1)

    async def wait(self, bot_key: str, chat_id: int) -> None:
        limiter = self._chats.get(chat_id)
        if limiter is None:
            limiter = self._chats[chat_id] = AsyncLimiter(*(self.per_group if is_group(chat_id) else self.per_chat))
        async with limiter:
            async with self._overall:
                pass


class RedisPacer:
    """The same limits, counted in Redis by every process of the bot."""

    def __init__(self, redis_url: str, per_chat: tuple[int, float] = PER_CHAT,
                 overall_per_second: int = OVERALL_PER_SECOND, per_group: tuple[int, float] = PER_GROUP,
                 prefix: str = "sticktionary-pacing"):
        from limits import RateLimitItemPerSecond
        from limits.aio.storage import RedisStorage
        from limits.aio.strategies import MovingWindowRateLimiter

        uri = redis_url.replace("redis://", "async+redis://", 1).replace("rediss://", "async+rediss://", 1)
        self._limiter = MovingWindowRateLimiter(RedisStorage(uri, implementation="redispy", key_prefix=prefix))
        # limits counts whole seconds: the window is rounded up, so the pace is never faster than asked.
        self._chat = RateLimitItemPerSecond(per_chat[0], int(-(-per_chat[1] // 1)))
        self._group = RateLimitItemPerSecond(per_group[0], int(-(-per_group[1] // 1)))
        self._overall = RateLimitItemPerSecond(overall_per_second, 1)
        self._fallback = LocalPacer(per_chat, overall_per_second, per_group)
        self._redis_again_at = 0.0  # while Redis is away: when to try it again
        self._outage = outage(REDIS)

    async def _take(self, item, *identifiers: str) -> None:
        while not await self._limiter.hit(item, *identifiers):
            stats = await self._limiter.get_window_stats(item, *identifiers)
            await asyncio.sleep(min(max(stats.reset_time - time.time(), 0.005), 5))

    async def wait(self, bot_key: str, chat_id: int) -> None:
        if time.monotonic() >= self._redis_again_at:
            try:
                await self._take(self._group if is_group(chat_id) else self._chat, bot_key, str(chat_id))
                await self._take(self._overall, bot_key, "all")
            except Exception as error:  # noqa: BLE001 - Redis away: an outage to wait out, not an error
                self._outage.begin(error)
                self._outage.waiting()
                self._redis_again_at = time.monotonic() + REDIS_RETRY_SECONDS
            else:
                self._outage.end()
                return
        await self._fallback.wait(bot_key, chat_id)
