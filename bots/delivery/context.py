"""What every reply handler of one bot works with: its sender, its send policy, its media, and the
attempt budget of the message being delivered (a context variable, so that every Bot API call
made for a message spends from that message's budget, however deep the handler that makes it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy import Engine

from bots.game_threads import GameThreads
from bots.media import Media
from bots.transport import Attempts, Sender, SendPolicy

_SENDING: ContextVar[Attempts | None] = ContextVar("sending", default=None)


@contextmanager
def spending(budget: Attempts) -> Iterator[None]:
    """Calls made inside spend from `budget` (the attempts of the message being delivered)."""
    token = _SENDING.set(budget)
    try:
        yield
    finally:
        _SENDING.reset(token)


@dataclass
class DeliveryContext:
    bot_key: str
    sender: Sender
    policy: SendPolicy
    media: Media
    db: Engine
    game_threads: GameThreads
    engine: object | None = None  # the game (core.game.Game), for replies rendered at delivery time

    async def call(self, paced_chat: int | None, call, budget: Attempts | None = None, *, wait: bool = False):
        """One Bot API call through the send policy, paced for `paced_chat` (None: not a chat message)."""
        if budget is None:
            budget = _SENDING.get()
        return await self.policy.process_request(call, chat_id=paced_chat, budget=budget, wait=wait)

    async def game(self, function, *args):
        return await self.game_threads.run(function, *args)
