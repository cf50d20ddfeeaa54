"""One bot at run time, whichever framework's shell carries it: the rooms it is made of, composed.

- intake (bots/intake.py): polling or the webhook into the inbox, each chat's updates in order;
- delivery (bots/delivery/): a handler per reply kind, live screens, the file cache, the replies
  owed to handled updates, and the outbox worker;
- transport (bots/transport/): the `Sender` the shell supplies and the one send policy (pacing, 429
  waits, outage backoff, the attempt budget) every call goes through.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor

from sqlalchemy import Engine

from bots.conversation import Conversation
from bots.delivery import DeliveryContext, OutboxWorker, OwedReplies
from bots.delivery.uploads import StickerUploads
from bots.game_threads import GameThreads
from bots.group_closer import close_group_rounds
from bots.inbox import ChatLocks, Inbox
from bots.intake import FinishedUpdates, Intake
from bots.media import Media
from bots.messages.catalogue import catalogue
from bots.messages.incoming import Incoming, incoming_from_update
from bots.messages.replies import Outgoing
from bots.transport import Sender, SendPolicy
from bots.transport.pacing import OVERALL_PER_SECOND, PER_CHAT, LocalPacer, Pacer
from core import metrics
from core.outbox import Route
from core.vocabulary import LANGUAGES
from storage.db import Database, UnitOfWork
from storage.outage import DATABASE, is_database_outage, outage

log = logging.getLogger(__name__)


class BotRuntime:
    def __init__(self, bot_key: str, conversation: Conversation, sender: Sender, db: Engine, media: Media,
                 *, languages: tuple[str, ...] = LANGUAGES, per_chat: tuple[int, float] | None = PER_CHAT,
                 overall_per_second: int = OVERALL_PER_SECOND, attempts: int = 8,
                 reply_max_age: float = 3600.0, delivers_to_moderators: bool = True,
                 game_executor: Executor | None = None, chat_locks: ChatLocks | None = None,
                 pacer: Pacer | None = None, file_chat: int | None = None):
        """`per_chat` (burst, seconds) paces each chat a little under one message a second, and
        `overall_per_second` all chats a little under Telegram's 30 a second (the margins absorb
        network jitter: calls may reach Telegram closer together than they left); per_chat None
        turns pacing off (only for a sandbox whose limits are off too). `pacer` replaces both (one
        shared through Redis by every process of the bot). `game_executor` runs the database and
        engine work, off the event loop (None: the loop's default executor). `chat_locks` keeps a
        chat's updates one at a time (shared through Redis by several workers). `attempts` is the one
        budget of tries per message (Settings.delivery.send_attempts); a reply still undelivered
        `reply_max_age` seconds after its update arrived is dropped. Outbox messages addressed to no
        player (moderator notices, posts to chats) go out through the one bot that
        `delivers_to_moderators`, the same in every process (Settings.telegram.moderator_bot)."""
        self.bot_key = bot_key
        self.conversation = conversation
        self.sender = sender
        self.languages = languages
        if pacer is None and per_chat is not None:
            pacer = LocalPacer(per_chat, overall_per_second)
        self.policy = SendPolicy(bot_key, pacer, attempts)
        # Not `chat_locks or …`: ChatLocks has a length, and one holding no lane would be replaced.
        self.chat_locks = chat_locks if chat_locks is not None else ChatLocks()
        self.finished = FinishedUpdates()
        game = conversation.game if conversation is not None else None
        outbox = game.outbox if game is not None else None
        mark_inactive = game.players.mark_inactive if game is not None else None
        threads = GameThreads(game_executor)
        self.delivery = DeliveryContext(bot_key, sender, self.policy, media, db, threads, game)
        self.inbox = Inbox(Database(db), bot_key, self._parse, self._handle, self._failure)
        self.replies = OwedReplies(self.delivery, self.inbox, outbox, mark_inactive, self.finished.mark,
                                   reply_max_age)
        self.intake = Intake(bot_key, self.inbox, self.chat_locks, threads, self.replies, self.policy.gate,
                             self._trouble)
        self.outbox = OutboxWorker(self.delivery, outbox, Route(bot_key, languages, delivers_to_moderators),
                                   conversation.holds if conversation is not None else None,
                                   conversation.render_outbox if conversation is not None else None,
                                   mark_inactive, self._trouble)
        self.uploads = StickerUploads(self.delivery, file_chat, languages)
        self._background: list[asyncio.Task] = []
        self._database = outage(DATABASE)
        metrics.bot_started(bot_key)

    # ------------------------------------------------------------------ the conversation, for the inbox
    def _parse(self, raw: dict) -> Incoming | None:
        return incoming_from_update(self.sender.parse_update(raw))

    def _handle(self, incoming: Incoming, unit: UnitOfWork) -> Outgoing:
        return self.conversation.handle(incoming, unit, bot_key=self.bot_key, bot_languages=self.languages)

    def _failure(self, incoming: Incoming, unit: UnitOfWork) -> Outgoing | None:
        return self.conversation.failure(incoming, unit)

    def _trouble(self, error: BaseException, message: str, *args) -> None:
        """A failure: the database being away is an outage, said once; anything else is logged."""
        if is_database_outage(error):
            self._database.begin(error)
            self._database.waiting()
        else:
            log.error(message, *args, exc_info=error)

    # ------------------------------------------------------------------ what the shells and operators use
    @property
    def delivers_to_moderators(self) -> bool:
        return self.outbox.route.moderator_bot

    @delivers_to_moderators.setter
    def delivers_to_moderators(self, value: bool) -> None:
        self.outbox.route = Route(self.bot_key, self.languages, value)

    @property
    def outbox_stopped(self) -> str | None:
        """Why this bot's outbox stopped (Telegram refused the token), or None."""
        return self.outbox.stopped

    @outbox_stopped.setter
    def outbox_stopped(self, reason: str | None) -> None:
        self.outbox.stopped = reason

    @property
    def replies_dropped(self) -> int:
        return self.replies.dropped

    async def receive(self, updates: list[dict]) -> None:
        await self.intake.receive(updates)

    async def wait_finished(self, update_id: int, timeout: float = 30) -> None:
        """Until the update has been handled and every reply to it delivered (it may already be)."""
        await self.finished.wait(update_id, timeout)

    async def deliver_outbox_once(self, limit: int = 20) -> int:
        return await self.outbox.deliver_once(limit)

    async def run_outbox(self, interval: float = 1.0) -> None:
        await self.outbox.run(interval)

    def start_background(self, *, polling: bool, poll_timeout: int = 10, sweep_interval: float = 2.0,
                         outbox: bool = True) -> None:
        """The sweep (updates left by a restart first), the outbox and, when polling, the poller."""
        self.intake.receiving = True
        self._background.append(asyncio.create_task(self.intake.run_sweeper(sweep_interval)))
        if outbox:
            self._background.append(asyncio.create_task(self.outbox.run()))
        if polling:
            self._background.append(asyncio.create_task(self.intake.poll(self.sender, poll_timeout)))
        if self.conversation is not None:
            self._background.append(asyncio.create_task(
                close_group_rounds(self.conversation.game, self.delivery.game_threads, self._trouble)))
        if self.uploads.chat_id is not None:
            self._background.append(asyncio.create_task(self.uploads.run()))

    async def stop(self, timeout: float = 20.0) -> None:
        """Stop receiving, let the updates in flight finish (up to `timeout`), stop the rest.
        Whatever is left unfinished is still in the inbox for the next start."""
        self.intake.receiving = False
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        await self.intake.finish_in_flight(timeout)

    async def sender_set_webhook(self, url: str, secret: str) -> None:
        await self.delivery.call(None, lambda: self.sender.set_webhook(url, secret), wait=True)

    async def register_commands(self) -> None:
        for language in self.languages:
            await self.delivery.call(None, lambda lang=language: self.sender.set_commands(lang, catalogue(lang).commands()),
                                     wait=True)
