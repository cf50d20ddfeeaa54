"""Wiring: a sandbox or real API base, a framework shell, the shared runtime and the game."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager

from bots.conversation import Conversation
from bots.inbox import ChatLocks
from bots.media import Media
from bots.pacing import RedisPacer
from bots.runtime import BotRuntime
from core.game import Game
from core.vocabulary import LANGUAGES

FRAMEWORKS = ("ptb", "aiogram")


def make_shell(framework: str, token: str, api_base: str, game: Game, conversation: Conversation, media: Media,
               *, bot_key: str | None = None, languages: tuple[str, ...] = LANGUAGES, pacing: bool = True,
               delivers_to_moderators: bool = True, game_executor: Executor | None = None,
               shared: SharedState | None = None):
    def runtime_factory(sender):
        return BotRuntime(bot_key or token.split(":")[0], conversation, sender, game.db, media, languages=languages,
                          per_chat=(3, 3.5) if pacing else None, delivers_to_moderators=delivers_to_moderators,
                          game_executor=game_executor, chat_locks=shared.chat_locks if shared else None,
                          pacer=shared.pacer if shared and pacing else None)

    if framework == "ptb":
        from bots.shell_ptb import PtbShell

        return PtbShell(token, api_base, runtime_factory)
    if framework == "aiogram":
        from bots.shell_aiogram import AiogramShell

        return AiogramShell(token, api_base, runtime_factory)
    raise ValueError(f"unknown framework {framework!r}: choose one of {', '.join(FRAMEWORKS)}")


class SharedState:
    """What the processes serving one bot share through Redis: each chat's turn and the pacing."""

    def __init__(self, redis_url: str):
        import redis.asyncio

        self.redis = redis.asyncio.Redis.from_url(redis_url)
        self.chat_locks = ChatLocks(self.redis)
        self.pacer = RedisPacer(redis_url)

    async def close(self) -> None:
        await self.redis.aclose()


def game_executor(threads: int) -> ThreadPoolExecutor:
    """The threads that run game work for every bot of a process (see Settings.game_threads)."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="game")


@contextmanager
def settled_heap() -> Iterator[None]:
    """While the bots run: what start-up built (modules, models, search indexes, about 300,000
    objects) is moved out of the garbage collector's sight. Otherwise every full collection walks
    it all, a pause of 50-200 ms for every player at once; measured with it: under 15 ms."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
