"""Sticker uploads for inline mode: an inline result offers a sticker by a file_id of the answering
bot, and a file_id exists only once the bot has sent that sticker somewhere. So each bot sends the
stickers it has none for to a storage chat (STICKTIONARY_FILE_CHAT, a group or channel of the
operator's), and keeps the ids Telegram gives (`TelegramFile`, kind "sticker", as files.py does).

- Which: stickers with a usable query in one of the bot's languages (what inline search can find),
  GIFs excepted (Telegram takes no GIF as a sticker), that have no file id of this bot; oldest first.
- Paced as every send is (bots/transport/pacing.py): 20 a minute per group, so 100,000 stickers take
  about 3.5 days; it resumes where it stopped, since the database says which stickers have an id.
- A sticker Telegram refuses (a broken file) is skipped until the process restarts; Telegram away
  ends the batch (the next one tries again); the bot not allowed in the chat ends it with one line.
"""

from __future__ import annotations

import asyncio
import logging

from sqlmodel import col, select

from bots.delivery.context import DeliveryContext
from bots.delivery.files import FileIds
from bots.transport import ChatMigrated, Forbidden, Owed, Rejected, Unauthorized
from core.game.inline_search import FILE_KIND as KIND
from core.game.inline_search import OfferCounts, has_file_id, offer_counts, searchable
from core.views import StickerView
from storage.db import read_session
from storage.models import Sticker

log = logging.getLogger(__name__)


class StickerUploads:
    def __init__(self, context: DeliveryContext, chat_id: int | None, languages: tuple[str, ...]):
        self.context = context
        self.chat_id = chat_id
        self.languages = tuple(languages)
        self.refused: set[int] = set()  # stickers Telegram would not take, skipped until a restart
        self.stopped: str | None = None  # why uploading stopped for good (no storage chat, not allowed there)

    # ------------------------------------------------------------------ what is missing (blocking: game threads)
    def counts(self) -> OfferCounts:
        return offer_counts(self.context.db, self.context.bot_key, self.languages)

    def waiting(self, limit: int) -> list[StickerView]:
        with read_session(self.context.db) as session:
            query = select(Sticker).where(searchable(self.languages), Sticker.format != "gif",
                                          ~has_file_id(self.context.bot_key))
            if self.refused:
                query = query.where(col(Sticker.id).not_in(sorted(self.refused)))
            rows = session.exec(query.order_by(Sticker.id).limit(limit)).all()
            return [StickerView(s.id, s.key, s.file_path, s.format) for s in rows]

    # ------------------------------------------------------------------ uploading
    async def upload_batch(self, limit: int = 20) -> int:
        """Upload up to `limit` waiting stickers; returns how many got an id."""
        if self.chat_id is None or self.stopped:
            return 0
        context, files = self.context, FileIds(self.context.db, self.context.bot_key)
        done = 0
        for sticker in await context.game(self.waiting, limit):
            try:
                payload = await asyncio.to_thread(context.media.sticker_file, sticker)
            except OSError as error:
                log.warning("bot %s: sticker %s cannot be read for upload (%s): skipped", context.bot_key,
                            sticker.key, error)
                self.refused.add(sticker.id)
                continue
            try:
                message = await context.call(self.chat_id, lambda p=payload: context.sender.send_sticker(
                    self.chat_id, p.data, p.filename))
            except Owed:
                return done  # Telegram is away: the next batch tries again
            except Rejected as error:
                log.warning("bot %s: Telegram refused sticker %s (%s): skipped", context.bot_key, sticker.key, error)
                self.refused.add(sticker.id)
                continue
            except (Forbidden, ChatMigrated, Unauthorized) as error:
                self.stopped = f"{type(error).__name__}: {error}"
                log.error("bot %s: cannot post to the storage chat STICKTIONARY_FILE_CHAT=%s (%s): sticker uploads "
                          "stop; add the bot to that chat, allowed to post, and restart", context.bot_key,
                          self.chat_id, self.stopped)
                return done
            file_id = getattr(getattr(message, KIND, None), "file_id", None)
            if file_id:
                await context.game(files.remember, sticker.id, KIND, file_id)
                done += 1
        return done

    async def run(self, idle_seconds: float = 60.0) -> None:
        """Upload batch after batch; when none is waiting, look again every `idle_seconds`."""
        while not self.stopped:
            try:
                uploaded = await self.upload_batch()
            except Exception as error:  # noqa: BLE001 - the database away or a bug: logged, tried again later
                log.warning("bot %s: sticker uploads failed (%s); trying again", self.context.bot_key, error)
                uploaded = 0
            if not uploaded:
                await asyncio.sleep(idle_seconds)
