"""Live screens: one message per screen (the label round, the retrieval grid, a review round),
edited in place as the task goes on. The message ids are recorded per bot, player and screen in the
database (`LiveScreen`), so that any process can edit the screen a player sees."""

from __future__ import annotations

import logging

from sqlalchemy import Engine, or_
from sqlmodel import Session, select

from bots.delivery.context import DeliveryContext
from bots.delivery.replies import edit, grid_image, handles
from bots.messages.replies import Expire, LivePhoto, LiveText, Outgoing
from bots.transport import TelegramError
from storage.db import insert_ignoring_conflicts, session_scope
from storage.models import LiveScreen, utcnow

log = logging.getLogger(__name__)


class LiveScreens:
    """The recorded screens of one bot. Its methods block (database work): run them on the game threads."""

    def __init__(self, db: Engine, bot_key: str):
        self.db, self.bot_key = db, bot_key

    def row(self, player_id: int, screen: str) -> LiveScreen | None:
        with Session(self.db) as session:
            return session.get(LiveScreen, (self.bot_key, player_id, screen))

    def record(self, player_id: int, chat_id: int, screen: str, part: str, message_id: int | None,
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

    def screen_of(self, player_id: int, message_id: int) -> LiveScreen | None:
        """The recorded screen `message_id` belongs to, if any."""
        with Session(self.db) as session:
            return session.exec(select(LiveScreen).where(
                LiveScreen.bot_key == self.bot_key, LiveScreen.player_id == player_id,
                or_(LiveScreen.text_message_id == message_id, LiveScreen.photo_message_id == message_id))
            ).first()


@handles(LiveText, LivePhoto)
async def deliver_live(context: DeliveryContext, outgoing: Outgoing, reply: LiveText | LivePhoto) -> None:
    """Edit the screen's message in place; send it when there is none yet (or it is gone, or
    `fresh` moves the screen down), and record the new message id."""
    screens = LiveScreens(context.db, context.bot_key)
    chat, sender, player = outgoing.chat_id, context.sender, outgoing.player_id
    part = "text" if isinstance(reply, LiveText) else "photo"
    state = "finished" if reply.final else "live"
    row = await context.game(screens.row, player, reply.screen) if player is not None else None
    message_id = getattr(row, f"{part}_message_id") if row is not None else None
    if message_id is None and isinstance(reply, LivePhoto):
        message_id = reply.on_message
    if message_id is not None and reply.fresh:
        # The screen moves down: the old message says so and keeps no button (a failure is harmless).
        try:
            await edit(context, lambda: sender.edit(chat, message_id, reply.moved or "…", None, part == "photo"))
        except TelegramError as error:
            log.info("could not mark a moved screen in chat %s: %s", chat, error)
        message_id = None
    image = None
    if isinstance(reply, LivePhoto) and reply.stickers is not None:
        image = await grid_image(context, reply.stickers, reply.highlight)
    if message_id is not None:
        if isinstance(reply, LiveText):
            done = await edit(context, lambda: sender.edit(chat, message_id, reply.text, reply.buttons, False))
        elif image is not None:
            done = await edit(context, lambda: sender.edit_media(chat, message_id, image, "screen.png",
                                                                 reply.caption or None, reply.buttons))
        else:
            done = await edit(context, lambda: sender.edit(chat, message_id, reply.caption, reply.buttons, True))
        if done:
            if reply.final and player is not None:
                await context.game(screens.record, player, chat, reply.screen, part, None, state)
            return
    if isinstance(reply, LiveText):
        new_id = await context.call(chat, lambda: sender.send_text(chat, reply.text, reply.buttons))
    else:
        if image is None:
            # Only a caption for a photo this bot has no record of (sent before the records
            # began, or lost): the words go out as a message of their own, not on a blank image.
            await context.call(chat, lambda: sender.send_text(chat, reply.caption or "…", reply.buttons))
            return
        sent = await context.call(chat, lambda: sender.send_photo(chat, image, "screen.png", reply.caption or None,
                                                                  reply.buttons))
        new_id = getattr(sent, "message_id", None)
    if player is not None and isinstance(new_id, int):
        await context.game(screens.record, player, chat, reply.screen, part, new_id, state)


@handles(Expire)
async def expire(context: DeliveryContext, outgoing: Outgoing, reply: Expire) -> None:
    """A press on a screen whose task the engine closed: the screen says so, once."""
    screens = LiveScreens(context.db, context.bot_key)
    chat, player = outgoing.chat_id, outgoing.player_id
    screen = await context.game(screens.screen_of, player, reply.message_id) if player is not None else None
    if screen is not None and screen.state == "finished":
        return  # it shows its outcome and has no buttons: the press was a double tap
    await edit(context, lambda: context.sender.edit(chat, reply.message_id, reply.text, None, reply.caption))
    if screen is not None:  # a task the engine closed without this screen knowing (it expired)
        await context.game(screens.record, player, chat, screen.screen, "text", None, "expired")
