"""What both shells share: update dedupe, running the conversation off the event loop, and
delivering replies within Telegram's limits (pacing per chat and overall, waiting out 429,
retrying server errors, marking players who blocked the bot as inactive).

A shell supplies only a `Sender`: the handful of Bot API calls, in its framework's terms, with
the framework's errors translated into the ones below.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from concurrent.futures import Executor
from datetime import timedelta
from typing import Protocol

from sqlalchemy import Engine, or_
from sqlmodel import Session, select

from bots.conversation import Conversation
from bots.inbox import ChatLocks, Inbox, update_id_of
from bots.media import Media
from bots.pacing import LocalPacer, Pacer
from bots.screens import (
    COMMANDS,
    AnswerCallback,
    Buttons,
    EditText,
    Expire,
    Incoming,
    LivePhoto,
    LiveText,
    Outgoing,
    SendGrid,
    SendSticker,
    SendText,
    incoming_from_update,
)
from core.outbox import Route, claimer_id
from storage.db import insert_ignoring_conflicts, session_scope
from storage.models import LiveScreen, OutboxMessage, TelegramFile, utcnow

log = logging.getLogger(__name__)


REMEMBERED_UPDATES = 10_000  # how many handled update ids wait_finished still knows
# The update kinds the bots ask Telegram for (polling and webhooks alike).
ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]


class TelegramError(Exception):
    pass


class RetryAfter(TelegramError):
    def __init__(self, seconds: float):
        super().__init__(f"retry after {seconds}s")
        self.seconds = seconds


class Forbidden(TelegramError):
    """The player blocked the bot (403)."""


class Transient(TelegramError):
    """5xx, timeouts, dropped connections: worth another try."""


class Rejected(TelegramError):
    """400/404: Telegram refuses this call for good (unknown chat, a bot not in that group, an edit
    of a message that is gone). Retrying cannot help."""


class ChatMigrated(TelegramError):
    """The group became a supergroup with a new id: send there instead (and remember it)."""

    def __init__(self, new_chat_id: int):
        super().__init__(f"the chat migrated to {new_chat_id}")
        self.new_chat_id = new_chat_id


class Unauthorized(TelegramError):
    """401 (or PTB's InvalidToken): Telegram does not know this bot's token, revoked or mistyped.
    Nothing this bot sends can succeed until an operator fixes the token."""


class Conflict(TelegramError):
    """409: another process polls with this token, or a webhook is set while we poll."""


def not_modified(error: TelegramError) -> bool:
    """Telegram's answer to an edit that changes nothing: the message already shows it (success)."""
    return "message is not modified" in str(error).lower()


def message_gone(error: TelegramError) -> bool:
    """An edit Telegram refuses because the message cannot be edited any more: send anew."""
    text = str(error).lower()
    return any(words in text for words in ("message to edit not found", "message can't be edited",
                                           "message_id_invalid", "there is no text in the message",
                                           "there is no caption in the message", "there is no media"))


class UnexpectedError(TelegramError):
    """Any other error the framework reports: not known to be permanent, so worth a later try."""


class Sender(Protocol):
    async def get_updates(self, offset: int | None, timeout: int) -> list[dict]:
        """getUpdates, the updates as Telegram sent them (JSON), not parsed yet."""

    def parse_update(self, raw: dict) -> dict:
        """The update as the framework reads it (raises when it cannot), as JSON."""

    async def send_text(self, chat_id: int, text: str, buttons: Buttons | None,
                        entities: list[dict] | None = None) -> int: ...

    # Files are bytes to upload or a file_id already on Telegram; each returns the framework's
    # Message, whose attributes (sticker, animation, photo) both frameworks name as the Bot API does.
    async def send_photo(self, chat_id: int, file: bytes | str, filename: str, caption: str | None,
                         buttons: Buttons | None): ...

    async def send_animation(self, chat_id: int, file: bytes | str, filename: str): ...

    async def send_sticker(self, chat_id: int, file: bytes | str, filename: str): ...

    async def edit(self, chat_id: int, message_id: int, text: str, buttons: Buttons | None, caption: bool,
                   entities: list[dict] | None = None) -> None: ...

    async def edit_media(self, chat_id: int, message_id: int, file: bytes, filename: str, caption: str | None,
                         buttons: Buttons | None) -> None:
        """editMessageMedia: the photo of a message replaced (uploaded), with its caption and buttons."""

    async def edit_markup(self, chat_id: int, message_id: int, buttons: Buttons | None) -> None:
        """editMessageReplyMarkup: only the buttons (None removes them)."""

    async def answer_callback(self, callback_id: str, text: str, alert: bool) -> None: ...

    async def set_commands(self, language: str, commands: list[tuple[str, str]]) -> None: ...

    async def set_webhook(self, url: str, secret: str) -> None: ...


class BotRuntime:
    def __init__(self, bot_key: str, conversation: Conversation, sender: Sender, db: Engine, media: Media,
                 *, languages: tuple[str, ...] = ("en", "zh"), per_chat: tuple[int, float] | None = (3, 3.5),
                 overall_per_second: int = 25, attempts: int = 6, delivers_to_moderators: bool = True,
                 game_executor: Executor | None = None, chat_locks: ChatLocks | None = None,
                 pacer: Pacer | None = None):
        """`per_chat` (burst, seconds) paces each chat a little under one message a second, and
        `overall_per_second` all chats a little under Telegram's 30 a second (the margins absorb
        network jitter: calls may reach Telegram closer together than they left); per_chat None
        turns pacing off (only for a sandbox whose limits are off too). `pacer` replaces both (one
        shared through Redis by every process of the bot). `game_executor` runs the database and
        engine work, off the event loop (None: the loop's default executor). `chat_locks` keeps a
        chat's updates one at a time (shared through Redis by several workers)."""
        self.bot_key = bot_key
        self.conversation = conversation
        self.sender = sender
        self.db = db
        self.media = media
        self.languages = languages
        # Outbox messages addressed to no player (moderator notices, posts to chats) go out through
        # one bot only, the same one in every process (Settings.moderator_bot).
        self.delivers_to_moderators = delivers_to_moderators
        self.claimer = claimer_id(bot_key)  # who holds the leases on the outbox rows this bot claims
        self.outbox_stopped: str | None = None  # why this bot's outbox stopped (a refused token)
        self._moved_chats: dict[int, int] = {}  # groups seen migrating (the database has them too)
        self.attempts = attempts
        self.game_executor = game_executor
        if pacer is None and per_chat is not None:
            pacer = LocalPacer(per_chat, overall_per_second)
        self.pacer = pacer
        self.chat_locks = chat_locks or ChatLocks()
        self.inbox = Inbox(db, bot_key, self._parse, self._handle, self._failure)
        self._scheduled: set[int] = set()  # lanes with a drain waiting for the lane
        self._drains: set[asyncio.Task] = set()
        self._background: list[asyncio.Task] = []
        self._receiving = True
        # Update ids fully handled, the most recent ones only (tests and benchmarks wait on them).
        self._finished: OrderedDict[int, None] = OrderedDict()
        self._waiting: dict[int, list[asyncio.Future]] = {}

    async def _game(self, function, *args):
        """Run blocking game work (database, engine) in the game executor."""
        return await asyncio.get_running_loop().run_in_executor(self.game_executor, functools.partial(function, *args))

    # ------------------------------------------------------------------ updates
    def _parse(self, raw: dict) -> Incoming | None:
        return incoming_from_update(self.sender.parse_update(raw))

    def _handle(self, incoming: Incoming) -> Outgoing:
        return self.conversation.handle(incoming, bot_key=self.bot_key)

    def _failure(self, incoming: Incoming) -> Outgoing | None:
        return self.conversation.failure(incoming)

    async def receive(self, updates: list[dict]) -> None:
        """Store updates durably, then have them handled in the background. Telegram may be told
        we have them (the next getUpdates offset, the webhook's 200) once this returns."""
        if not self._receiving:
            raise RuntimeError("the bot is stopping")
        for lane in await self._game(self.inbox.store, updates):
            self._schedule(lane)

    def _schedule(self, lane: int) -> None:
        if lane in self._scheduled:
            return  # a drain of this lane is already waiting: it will take this update too
        self._scheduled.add(lane)
        task = asyncio.create_task(self._drain(lane))
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _drain(self, lane: int) -> None:
        """Handle a lane's unfinished updates in order, delivering each one's replies before the next."""
        holding = False
        try:
            async with self.chat_locks.hold(self.bot_key, lane):
                holding = True
                self._scheduled.discard(lane)  # from now on, a new update needs a drain of its own
                while True:
                    taken = await self._game(self.inbox.take_next, lane)
                    if taken is None:
                        return
                    update_id, outgoing = taken
                    if outgoing is not None:
                        try:
                            await self.deliver(outgoing)
                        except Exception:  # noqa: BLE001 - a bug in delivery: once, not again every sweep
                            log.exception("bot %s: the replies to update %s could not be delivered", self.bot_key,
                                          update_id)
                    await self._game(self.inbox.mark_done, update_id)
                    self._mark_finished(update_id)
        except Exception:  # noqa: BLE001 - logged; the sweep takes the lane up again
            log.exception("bot %s: lane %s stopped", self.bot_key, lane)
        finally:
            if not holding:  # never got the lane: not waiting for it any more
                self._scheduled.discard(lane)

    async def sweep(self, older_than: float = 0.0) -> int:
        """Drain every lane with unfinished updates (received before a restart, or by a worker that
        died); returns how many lanes."""
        lanes = await self._game(self.inbox.waiting_lanes, timedelta(seconds=older_than))
        for lane in lanes:
            self._schedule(lane)
        return len(lanes)

    async def run_sweeper(self, interval: float = 2.0) -> None:
        while True:
            try:
                await self.sweep(older_than=interval)
            except Exception:  # noqa: BLE001
                log.exception("bot %s: inbox sweep failed", self.bot_key)
            await asyncio.sleep(interval)

    async def poll(self, timeout: int = 10) -> None:
        """Long polling: each batch is stored before the next getUpdates call acknowledges it."""
        offset = None
        while self._receiving:
            try:
                updates = await self.sender.get_updates(offset, timeout)
            except RetryAfter as wait:
                await asyncio.sleep(min(wait.seconds, 60))
                continue
            except Unauthorized:
                log.error("bot %s: Telegram refuses its token (401); it stops polling. Check the token in "
                          "STICKTIONARY_BOTS", self.bot_key)
                return
            except (TelegramError, OSError) as error:
                log.warning("bot %s: getUpdates failed (%s); trying again", self.bot_key, type(error).__name__)
                await asyncio.sleep(1)
                continue
            if not self._receiving:
                return  # not stored, so not acknowledged: Telegram gives them again after the restart
            ids = [i for i in (update_id_of(u) for u in updates) if i is not None]
            if updates:
                try:
                    await self.receive(updates)
                except Exception:  # noqa: BLE001 - not stored, so not acknowledged: asked for again
                    log.exception("bot %s: could not store %d updates; asking for them again", self.bot_key,
                                  len(updates))
                    await asyncio.sleep(1)
                    continue
            if ids:
                offset = max(ids) + 1

    def start_background(self, *, polling: bool, poll_timeout: int = 10, sweep_interval: float = 2.0,
                         outbox: bool = True) -> None:
        """The sweep (updates left by a restart first), the outbox and, when polling, the poller."""
        self._receiving = True
        self._background.append(asyncio.create_task(self.run_sweeper(sweep_interval)))
        if outbox:
            self._background.append(asyncio.create_task(self.run_outbox()))
        if polling:
            self._background.append(asyncio.create_task(self.poll(poll_timeout)))

    async def stop(self, timeout: float = 20.0) -> None:
        """Stop receiving, let the updates in flight finish (up to `timeout`), stop the rest.
        Whatever is left unfinished is still in the inbox for the next start."""
        self._receiving = False
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        if self._drains:
            done, pending = await asyncio.wait(set(self._drains), timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _mark_finished(self, update_id: int) -> None:
        self._finished[update_id] = None
        if len(self._finished) > REMEMBERED_UPDATES:
            self._finished.popitem(last=False)
        for waiter in self._waiting.pop(update_id, ()):
            if not waiter.done():
                waiter.set_result(None)

    async def wait_finished(self, update_id: int, timeout: float = 30) -> None:
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

    # ------------------------------------------------------------------ delivery
    async def _call(self, paced_chat: int | None, call):
        """One Bot API call with pacing and retries; returns its result."""
        last: TelegramError | None = None
        for attempt in range(self.attempts):
            if paced_chat is not None and self.pacer is not None:
                await self.pacer.wait(self.bot_key, paced_chat)
            try:
                return await call()
            except RetryAfter as wait:
                last = wait
                await asyncio.sleep(min(wait.seconds, 60))
            except Transient as error:
                last = error
                if attempt + 1 < self.attempts:
                    await asyncio.sleep(min(0.1 * 2 ** attempt, 5))
        raise Transient(f"gave up after {self.attempts} attempts ({last})")

    async def deliver(self, outgoing: Outgoing) -> None:
        # The answer to a button press goes out alongside the screens rather than after them: it is
        # not a chat message, so it need not wait its turn, and it stops the spinner on the
        # player's button sooner (Telegram asks bots to answer promptly).
        answer = next((r for r in outgoing.replies if isinstance(r, AnswerCallback)), None)
        answering = asyncio.create_task(self._deliver_one(outgoing, answer)) if answer is not None else None
        folded = bool(outgoing.outbox_ids)
        try:
            for index, reply in enumerate(outgoing.replies):
                if reply is not answer:
                    await self._deliver_one(outgoing, reply)
                if folded and index == outgoing.notices_at:  # the held notices reached the player
                    await self._game(self.conversation.game.outbox.mark_folded, list(outgoing.outbox_ids))
                    folded = False
            if folded:
                await self._game(self.conversation.game.outbox.mark_folded, list(outgoing.outbox_ids))
        except Forbidden:
            if outgoing.player_id is not None:
                await self._game(self.conversation.game.players.mark_inactive, outgoing.player_id)
        except Transient:
            log.warning("could not deliver to chat %s", outgoing.chat_id)
        except Rejected as error:
            log.warning("Telegram refused a message to chat %s: %s", outgoing.chat_id, error)
        except TelegramError as error:  # a migrated group, a refused token, a conflict, anything else
            log.warning("could not deliver to chat %s: %s: %s", outgoing.chat_id, type(error).__name__, error)
        finally:
            if answering is not None:
                await answering  # it never raises a TelegramError: a late answer is harmless

    async def _deliver_one(self, outgoing: Outgoing, reply) -> None:
        chat = outgoing.chat_id
        sender = self.sender
        if isinstance(reply, AnswerCallback):
            if outgoing.callback_id:
                try:
                    await self._call(None, lambda: sender.answer_callback(outgoing.callback_id, reply.text, reply.alert))
                except TelegramError:
                    pass  # an answer that comes too late is harmless
        elif isinstance(reply, SendText):
            # Entities are passed only when there are some: a Sender without them still works.
            links = {"entities": reply.entities} if reply.entities else {}
            await self._call(chat, lambda: sender.send_text(chat, reply.text, reply.buttons, **links))
        elif isinstance(reply, EditText):
            links = {"entities": reply.entities} if reply.entities else {}
            await self._edit(lambda: sender.edit(chat, reply.message_id, reply.text, reply.buttons, reply.caption,
                                                  **links))
        elif isinstance(reply, SendSticker):
            await self._send_sticker(chat, reply)
        elif isinstance(reply, SendGrid):
            # Images go to the default executor: Pillow lets go of the interpreter lock while it works.
            image = await self._grid_image(reply.stickers, reply.highlight)
            await self._call(chat, lambda: sender.send_photo(chat, image, "grid.png", reply.caption, reply.buttons))
        elif isinstance(reply, LiveText | LivePhoto):
            await self._deliver_live(outgoing, reply)
        elif isinstance(reply, Expire):
            await self._expire(outgoing, reply)

    async def _edit(self, call) -> bool:
        """An edit; True when it is done (or there was nothing to change), False when the message
        cannot be edited any more (gone, or of another kind). Other refusals raise."""
        try:
            await self._call(None, call)
            return True
        except Rejected as error:
            if not_modified(error):
                return True
            if message_gone(error):
                return False
            raise

    async def _grid_image(self, stickers, highlight: int | None) -> bytes:
        """The grid image, tile `highlight` outlined. Images go to the default executor: Pillow lets go
        of the interpreter lock while it works, and moving stickers are decoded in a child process."""
        return await asyncio.to_thread(self.media.grid, stickers, highlight)

    # ------------------------------------------------------------------ live screens
    def _live_row(self, player_id: int, screen: str) -> LiveScreen | None:
        with Session(self.db) as session:
            return session.get(LiveScreen, (self.bot_key, player_id, screen))

    def _record_live(self, player_id: int, chat_id: int, screen: str, part: str, message_id: int | None,
                     state: str) -> None:
        with session_scope(self.db) as session:
            row = session.get(LiveScreen, (self.bot_key, player_id, screen), with_for_update=True)
            if row is None:
                insert_ignoring_conflicts(session, LiveScreen.__table__, [{
                    "bot_key": self.bot_key, "player_id": player_id, "screen": screen, "chat_id": chat_id,
                    "state": state, "updated_at": utcnow()}], ["bot_key", "player_id", "screen"])
                row = session.get(LiveScreen, (self.bot_key, player_id, screen), with_for_update=True)
            if message_id is not None:
                setattr(row, f"{part}_message_id", message_id)
            row.chat_id = chat_id
            row.state = state
            row.updated_at = utcnow()
            session.add(row)

    def _screen_of(self, player_id: int, message_id: int) -> LiveScreen | None:
        """The recorded screen `message_id` belongs to, if any."""
        with Session(self.db) as session:
            return session.exec(select(LiveScreen).where(
                LiveScreen.bot_key == self.bot_key, LiveScreen.player_id == player_id,
                or_(LiveScreen.text_message_id == message_id, LiveScreen.photo_message_id == message_id))
            ).first()

    async def _deliver_live(self, outgoing: Outgoing, reply: LiveText | LivePhoto) -> None:
        """Edit the screen's message in place; send it when there is none yet (or it is gone, or
        `fresh` moves the screen down), and record the new message id."""
        chat, sender, player = outgoing.chat_id, self.sender, outgoing.player_id
        part = "text" if isinstance(reply, LiveText) else "photo"
        state = "finished" if reply.final else "live"
        row = await self._game(self._live_row, player, reply.screen) if player is not None else None
        message_id = getattr(row, f"{part}_message_id") if row is not None else None
        if message_id is None and isinstance(reply, LivePhoto):
            message_id = reply.on_message
        if message_id is not None and reply.fresh:
            # The screen moves down: the old message says so and keeps no button (a failure is harmless).
            try:
                await self._edit(lambda: sender.edit(chat, message_id, reply.moved or "…", None, part == "photo"))
            except TelegramError as error:
                log.info("could not mark a moved screen in chat %s: %s", chat, error)
            message_id = None
        image = None
        if isinstance(reply, LivePhoto) and reply.stickers is not None:
            image = await self._grid_image(reply.stickers, reply.highlight)
        if message_id is not None:
            if isinstance(reply, LiveText):
                done = await self._edit(lambda: sender.edit(chat, message_id, reply.text, reply.buttons, False))
            elif image is not None:
                done = await self._edit(lambda: sender.edit_media(chat, message_id, image, "screen.png",
                                                                  reply.caption or None, reply.buttons))
            else:
                done = await self._edit(lambda: sender.edit(chat, message_id, reply.caption, reply.buttons, True))
            if done:
                if reply.final and player is not None:
                    await self._game(self._record_live, player, chat, reply.screen, part, None, state)
                return
        if isinstance(reply, LiveText):
            new_id = await self._call(chat, lambda: sender.send_text(chat, reply.text, reply.buttons))
        else:
            if image is None:
                # Only a caption for a photo this bot has no record of (sent before the records
                # began, or lost): the words go out as a message of their own, not on a blank image.
                await self._call(chat, lambda: sender.send_text(chat, reply.caption or "…", reply.buttons))
                return
            sent = await self._call(chat, lambda: sender.send_photo(chat, image, "screen.png", reply.caption or None,
                                                                    reply.buttons))
            new_id = getattr(sent, "message_id", None)
        if player is not None and isinstance(new_id, int):
            await self._game(self._record_live, player, chat, reply.screen, part, new_id, state)

    async def _expire(self, outgoing: Outgoing, reply: Expire) -> None:
        chat, sender = outgoing.chat_id, self.sender
        screen = (await self._game(self._screen_of, outgoing.player_id, reply.message_id)
                  if outgoing.player_id is not None else None)
        if screen is not None and screen.state == "finished":
            return  # it shows its outcome and has no buttons: the press was a double tap
        await self._edit(lambda: sender.edit(chat, reply.message_id, reply.text, None, reply.caption))
        if screen is not None:  # a task the engine closed without this screen knowing (it expired)
            await self._game(self._record_live, outgoing.player_id, chat, screen.screen, "text", None, "expired")

    def _cached_file_id(self, sticker_id: int, kind: str) -> str | None:
        with Session(self.db) as session:
            row = session.get(TelegramFile, (self.bot_key, sticker_id, kind))
            return row.file_id if row else None

    def _remember_file_id(self, sticker_id: int, kind: str, file_id: str) -> None:
        with session_scope(self.db) as session:
            insert_ignoring_conflicts(session, TelegramFile.__table__, [{
                "bot_key": self.bot_key, "sticker_id": sticker_id, "kind": kind, "file_id": file_id,
                "created_at": utcnow()}], ["bot_key", "sticker_id", "kind"])

    async def _send_sticker(self, chat: int, reply: SendSticker) -> None:
        sticker = reply.sticker
        method = "animation" if sticker.format == "gif" else "sticker"  # sendSticker takes no GIF
        send = self.sender.send_animation if method == "animation" else self.sender.send_sticker
        file_id = await self._game(self._cached_file_id, sticker.id, method)
        if file_id:
            await self._call(chat, lambda: send(chat, file_id, ""))
            return
        payload = await asyncio.to_thread(self.media.sticker_file, sticker)
        message = await self._call(chat, lambda: send(chat, payload.data, payload.filename))
        sent = getattr(message, method, None)
        new_id = getattr(sent, "file_id", None)
        if new_id:
            await self._game(self._remember_file_id, sticker.id, method, new_id)

    # ------------------------------------------------------------------ outbox
    @property
    def route(self) -> Route:
        return Route(self.bot_key, self.languages, self.delivers_to_moderators)

    async def deliver_outbox_once(self, limit: int = 20) -> int:
        """Claim a batch of this bot's due outbox messages and deliver them, one at a time, each
        marked sent, retried later or dead-lettered as soon as its outcome is known. Returns how
        many were sent."""
        if self.outbox_stopped:
            return 0
        outbox = self.conversation.game.outbox
        messages = await self._game(outbox.claim, self.route, self.claimer, limit)
        if not messages:
            return 0
        remaining = [message.id for message in messages]
        heartbeat = asyncio.create_task(self._keep_leases(remaining))
        sent = 0
        try:
            for message in messages:
                try:
                    sent += await self._deliver_message(message)
                except Unauthorized as error:
                    self.outbox_stopped = str(error)
                    log.error("bot %s: Telegram refuses this bot's token (%s). Its outbox is stopped and %d "
                              "messages stay queued for it: fix the token in STICKTIONARY_BOTS and restart.",
                              self.bot_key, error, len(remaining))
                    await self._game(outbox.release, list(remaining), self.claimer)
                    break
                remaining.remove(message.id)
        finally:
            heartbeat.cancel()
        return sent

    async def _keep_leases(self, ids: list[int]) -> None:
        """Renew the leases of a batch still being sent (`ids` shrinks as messages are done)."""
        outbox = self.conversation.game.outbox
        while True:
            await asyncio.sleep(outbox.lease_seconds / 3)
            try:
                await self._game(outbox.renew, list(ids), self.claimer)
            except Exception:  # noqa: BLE001 - the next beat tries again; a lost lease only risks a repeat
                log.exception("could not renew outbox leases of %s", self.bot_key)

    async def _deliver_message(self, message: OutboxMessage) -> int:
        """Send one claimed message to everyone it concerns; 1 if it went out."""
        outbox = self.conversation.game.outbox
        if await self._game(self.conversation.holds, message):
            await self._game(outbox.hold, message.id, self.claimer)  # for the player's next screen
            return 0
        try:
            outgoings = await self._game(self.conversation.render_outbox, message)
        except Exception as error:  # noqa: BLE001 - a rendering bug: it is retried, then dead-lettered
            log.exception("could not render outbox message %s", message.id)
            await self._game(outbox.retry_later, message.id, self.claimer, f"rendering failed: {error!r}")
            return 0
        if not outgoings:
            await self._game(outbox.dead_letter, message.id, self.claimer,
                             "nobody to send it to (the player is inactive or has no chat; or no moderators)")
            return 0
        delivered, permanent, temporary = 0, [], []
        for outgoing in outgoings:
            try:
                await self._send_outgoing(outgoing)
                delivered += 1
            except Forbidden as error:  # 403: the player blocked the bot, or the bot left that group
                if outgoing.player_id is not None:
                    await self._game(self.conversation.game.players.mark_inactive, outgoing.player_id)
                permanent.append(f"chat {outgoing.chat_id}: forbidden: {error}")
            except Rejected as error:
                permanent.append(f"chat {outgoing.chat_id}: refused: {error}")
            except (Transient, Conflict, UnexpectedError) as error:
                temporary.append(f"chat {outgoing.chat_id}: {type(error).__name__}: {error}")
        problems = "; ".join(permanent + temporary)
        if delivered:
            # Some recipients have it (several moderators): sending it again would repeat it to them.
            if problems:
                log.warning("outbox message %s reached %d of %d chats: %s", message.id, delivered, len(outgoings),
                            problems)
            if not await self._game(outbox.mark_sent, message.id, self.claimer):
                log.warning("outbox message %s was sent after its lease was lost: it may go out twice", message.id)
            return 1
        if temporary:
            status = await self._game(outbox.retry_later, message.id, self.claimer, problems)
            log.warning("outbox message %s not sent (%s): %s", message.id, status or "lease lost", problems)
        else:
            await self._game(outbox.dead_letter, message.id, self.claimer, problems)
            log.warning("outbox message %s dead-lettered: %s", message.id, problems)
        return 0

    async def _send_outgoing(self, outgoing: Outgoing) -> None:
        """Every reply of one outgoing message, following a group that migrated to a supergroup."""
        outgoing.chat_id = self._moved_chats.get(outgoing.chat_id, outgoing.chat_id)  # claimed before it moved
        for reply in outgoing.replies:
            for _ in range(3):  # a chat can migrate once; the loop only bounds a misbehaving server
                try:
                    await self._deliver_one(outgoing, reply)
                    break
                except ChatMigrated as moved:
                    await self._game(self.conversation.game.outbox.migrate_chat, outgoing.chat_id, moved.new_chat_id)
                    log.info("chat %s migrated to %s: following it", outgoing.chat_id, moved.new_chat_id)
                    self._moved_chats[outgoing.chat_id] = moved.new_chat_id
                    outgoing.chat_id = moved.new_chat_id
            else:
                raise Rejected(f"chat {outgoing.chat_id} keeps migrating")

    async def run_outbox(self, interval: float = 1.0) -> None:
        """Deliver the outbox until cancelled, or until Telegram refuses the token."""
        while not self.outbox_stopped:
            try:
                while await self.deliver_outbox_once():
                    pass  # a full queue drains without pausing between batches
            except Exception:  # noqa: BLE001
                log.exception("outbox delivery failed")
            await asyncio.sleep(interval)

    # ------------------------------------------------------------------ commands
    async def sender_set_webhook(self, url: str, secret: str) -> None:
        await self._call(None, lambda: self.sender.set_webhook(url, secret))

    async def register_commands(self) -> None:
        for language in self.languages:
            await self._call(None, lambda lang=language: self.sender.set_commands(lang, COMMANDS[lang]))
