"""Pacing what a bot sends under Telegram's limits: about one message a second per private chat,
20 a minute per group, 30 a second overall, per bot token.

`LocalPacer` keeps the buckets in this process (one process per bot). `RedisPacer` keeps them in
Redis, so the limits hold across every process serving the bot (several webhook workers), with
the `limits` package's moving windows.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from aiolimiter import AsyncLimiter


class Pacer(Protocol):
    async def wait(self, bot_key: str, chat_id: int) -> None:
        """Return once a message from this bot to this chat may go out (and count it)."""


def is_group(chat_id: int) -> bool:
    return chat_id < 0  # Telegram's group and channel ids are negative


class LocalPacer:
    def __init__(self, per_chat: tuple[int, float] = (3, 3.5), overall_per_second: int = 25,
                 per_group: tuple[int, float] = (18, 60)):
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

    def __init__(self, redis_url: str, per_chat: tuple[int, int] = (3, 4), overall_per_second: int = 25,
                 per_group: tuple[int, int] = (18, 60), prefix: str = "sticktionary-pacing"):
        from limits import RateLimitItemPerSecond
        from limits.aio.storage import RedisStorage
        from limits.aio.strategies import MovingWindowRateLimiter

        uri = redis_url.replace("redis://", "async+redis://", 1).replace("rediss://", "async+rediss://", 1)
        self._limiter = MovingWindowRateLimiter(RedisStorage(uri, implementation="redispy", key_prefix=prefix))
        self._chat = RateLimitItemPerSecond(*per_chat)
        self._group = RateLimitItemPerSecond(*per_group)
        self._overall = RateLimitItemPerSecond(overall_per_second, 1)

    async def _take(self, item, *identifiers: str) -> None:
        while not await self._limiter.hit(item, *identifiers):
            stats = await self._limiter.get_window_stats(item, *identifiers)
            await asyncio.sleep(min(max(stats.reset_time - time.time(), 0.005), 5))

    async def wait(self, bot_key: str, chat_id: int) -> None:
        await self._take(self._group if is_group(chat_id) else self._chat, bot_key, str(chat_id))
        await self._take(self._overall, bot_key, "all")
