"""Helpers for tests that run the bots in processes of their own."""

from __future__ import annotations

import asyncio
import os
import random
import time

import pytest
import redis
from sqlmodel import Session, select

from storage.models import InboxStatus, InboxUpdate


def handled_in(db, bot_key: str, patience: float = 300):
    """A player's wait_finished for a bot in another process: until the inbox says the update is
    finished (replies delivered). The bot may be down meanwhile: it is finished after the restart."""
    async def wait_finished(update_id: int, _timeout: float | None = None) -> None:
        # The player's usual patience (seconds) does not apply: a bot being restarted takes longer.
        deadline = time.monotonic() + patience
        def status_now():
            with Session(db) as session:
                return session.exec(select(InboxUpdate.status).where(
                    InboxUpdate.bot_key == bot_key, InboxUpdate.update_id == update_id)).first()

        while True:
            # Off the event loop: the sandbox shares it, and a slow answer from it makes a bot retry.
            status = await asyncio.to_thread(status_now)
            if status in (InboxStatus.DONE, InboxStatus.SKIPPED, InboxStatus.FAILED):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"update {update_id} of {bot_key} not finished")
            await asyncio.sleep(0.05)
    return wait_finished


def shared_redis_url() -> str:
    """A database of the Redis server on 127.0.0.1:6379, flushed (one per test process)."""
    url = f"redis://127.0.0.1:6379/{random.Random(os.getpid()).randint(1, 15)}"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.flushdb()
        client.close()
    except redis.RedisError as error:
        if os.environ.get("CI"):
            pytest.fail(f"Redis on 127.0.0.1:6379 is required under CI: {error}")
        pytest.skip(f"no Redis server: {error}")
    return url
