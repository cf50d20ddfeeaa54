"""Wiring: a sandbox or real API base, a framework shell, the shared runtime and the game."""

from __future__ import annotations

import os
from concurrent.futures import Executor

from bots.conversation import Conversation
from bots.inbox import ChatLocks
from bots.media import Media
from bots.runtime import BotRuntime
from bots.transport.pacing import PER_CHAT, RedisPacer
from core.game import Game
from core.vocabulary import LANGUAGES

FRAMEWORKS = ("ptb", "aiogram")


def make_shell(framework: str, token: str, api_base: str, game: Game, conversation: Conversation, media: Media,
               *, bot_key: str | None = None, languages: tuple[str, ...] = LANGUAGES, pacing: bool = True,
               delivers_to_moderators: bool = True, game_executor: Executor | None = None,
               shared: SharedState | None = None):
    settings = game.settings

    def runtime_factory(sender):
        return BotRuntime(bot_key or token.split(":")[0], conversation, sender, game.db.engine, media, languages=languages,
                          per_chat=PER_CHAT if pacing else None, delivers_to_moderators=delivers_to_moderators,
                          attempts=settings.delivery.send_attempts, reply_max_age=settings.delivery.reply_max_age_seconds,
                          game_executor=game_executor, chat_locks=shared.chat_locks if shared else None,
                          pacer=shared.pacer if shared and pacing else None, file_chat=upload_chat(settings))

    if framework == "ptb":
        from bots.transport.ptb_shell import PtbShell

        return PtbShell(token, api_base, runtime_factory)
    if framework == "aiogram":
        from bots.transport.aiogram_shell import AiogramShell

        return AiogramShell(token, api_base, runtime_factory)
    raise ValueError(f"unknown framework {framework!r}: choose one of {', '.join(FRAMEWORKS)}")


def upload_chat(settings) -> int | None:
    """The storage chat this process uploads stickers to for inline mode: with `run --workers N` only
    worker 0 uploads (the supervisor restarts it), so that no sticker is sent twice meanwhile."""
    return settings.telegram.file_chat if os.environ.get("STICKTIONARY_WORKER", "0") == "0" else None


class SharedState:
    """What the processes serving one bot share through Redis: each chat's turn and the pacing."""

    def __init__(self, redis_url: str):
        import redis.asyncio

        self.redis = redis.asyncio.Redis.from_url(redis_url)
        self.chat_locks = ChatLocks(self.redis)
        self.pacer = RedisPacer(redis_url)

    async def close(self) -> None:
        await self.redis.aclose()
