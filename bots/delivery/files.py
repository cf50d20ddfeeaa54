"""Stickers by file_id: a sticker is uploaded once per bot (a file_id belongs to one bot token) and
then sent by the id Telegram gave it, kept in the database (`TelegramFile`)."""

from __future__ import annotations

import asyncio

from sqlalchemy import Engine
from sqlmodel import Session

from bots.delivery.context import DeliveryContext
from bots.delivery.replies import handles
from bots.messages.replies import Outgoing, SendSticker
from storage.db import insert_ignoring_conflicts, session_scope
from storage.models import TelegramFile, utcnow


class FileIds:
    """One bot's file_id cache. Its methods block (database work): run them on the game threads."""

    def __init__(self, db: Engine, bot_key: str):
        self.db, self.bot_key = db, bot_key

    def cached(self, sticker_id: int, kind: str) -> str | None:
        with Session(self.db) as session:
            row = session.get(TelegramFile, (self.bot_key, sticker_id, kind))
            return row.file_id if row else None

    def remember(self, sticker_id: int, kind: str, file_id: str) -> None:
        with session_scope(self.db) as session:
            insert_ignoring_conflicts(session, TelegramFile.__table__, [{
                "bot_key": self.bot_key, "sticker_id": sticker_id, "kind": kind, "file_id": file_id,
                "created_at": utcnow()}], ["bot_key", "sticker_id", "kind"])


@handles(SendSticker)
async def send_sticker(context: DeliveryContext, outgoing: Outgoing, reply: SendSticker) -> None:
    chat, sticker = outgoing.chat_id, reply.sticker
    files = FileIds(context.db, context.bot_key)
    method = "animation" if sticker.format == "gif" else "sticker"  # sendSticker takes no GIF
    send = context.sender.send_animation if method == "animation" else context.sender.send_sticker
    file_id = await context.game(files.cached, sticker.id, method)
    if file_id:
        await context.call(chat, lambda: send(chat, file_id, ""))
        return
    payload = await asyncio.to_thread(context.media.sticker_file, sticker)
    message = await context.call(chat, lambda: send(chat, payload.data, payload.filename))
    new_id = getattr(getattr(message, method, None), "file_id", None)
    if new_id:
        await context.game(files.remember, sticker.id, method, new_id)
