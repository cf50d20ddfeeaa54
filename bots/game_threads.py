"""The threads that run game work (database and engine) for every bot of a process, off the event
loop: one executor per process (Settings.telegram.game_threads), shared by its bots."""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import Executor, ThreadPoolExecutor


def game_executor(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="game")


class GameThreads:
    """Runs blocking game work in the executor (None: the event loop's default one)."""

    def __init__(self, executor: Executor | None = None):
        self.executor = executor

    async def run(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(function, *args))
