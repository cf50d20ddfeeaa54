"""The aiogram shell: a Sender made of the Bot's calls, and aiogram's reading of an update.
Receiving (long polling into the inbox, or a webhook) is the shared runtime's, so that no update is
acknowledged to Telegram before it is stored. No game logic here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods.base import TelegramMethod
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultCachedSticker,
    InputMediaPhoto,
    MessageEntity,
    Update,
)

from bots.messages.limits import Buttons
from bots.startup import pinned_aiogram_models
from bots.transport import (
    ALLOWED_UPDATES,
    ChatMigrated,
    Conflict,
    Forbidden,
    Rejected,
    RetryAfter,
    Transient,
    Unauthorized,
    UnexpectedError,
    names_method,
)
from bots.transport.sender import Runtime, Sender


class GetRawUpdates(TelegramMethod[list[dict[str, Any]]]):
    """getUpdates with the updates left as JSON: aiogram's GetUpdates parses the whole batch, and
    one update it cannot read would fail them all."""

    __returning__ = list[dict[str, Any]]
    __api_method__ = "getUpdates"

    offset: int | None = None
    timeout: int | None = None
    allowed_updates: list[str] | None = None


_RESPONSE_MODELS = pinned_aiogram_models(GetRawUpdates.__returning__)  # see bots/startup.py


def _markup(buttons: Buttons | None) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text=label, callback_data=data)
                                                  for label, data in row] for row in buttons])


def _entities(entities: list[dict] | None) -> list[MessageEntity] | None:
    return [MessageEntity(**entity) for entity in entities] if entities else None


@names_method
async def _translated(call):
    """aiogram's errors as the runtime's (bots/runtime.py); every TelegramAPIError becomes one of them."""
    try:
        return await call
    except TelegramRetryAfter as error:
        raise RetryAfter(float(error.retry_after)) from None
    except TelegramMigrateToChat as error:
        raise ChatMigrated(int(error.migrate_to_chat_id)) from None
    except TelegramForbiddenError as error:
        raise Forbidden(str(error)) from None
    except TelegramUnauthorizedError as error:
        raise Unauthorized(str(error)) from None
    except TelegramConflictError as error:
        raise Conflict(str(error)) from None
    except (TelegramBadRequest, TelegramNotFound, TelegramEntityTooLarge) as error:  # 413 before NetworkError
        raise Rejected(str(error)) from None
    except (TelegramServerError, TelegramNetworkError) as error:
        raise Transient(str(error)) from None
    except TelegramAPIError as error:
        raise UnexpectedError(f"{type(error).__name__}: {error}") from None


def _file(file: bytes | str, filename: str):
    return file if isinstance(file, str) else BufferedInputFile(file, filename=filename)


class AiogramSender:
    def __init__(self, bot: Bot):
        self.bot = bot

    async def get_updates(self, offset, timeout):
        method = GetRawUpdates(offset=offset, timeout=timeout, allowed_updates=ALLOWED_UPDATES)
        return await _translated(self.bot(method, request_timeout=timeout + 10))

    def parse_update(self, raw):
        update = Update.model_validate(raw, context={"bot": self.bot})
        return update.model_dump(mode="json", by_alias=True, exclude_none=True)

    async def send_text(self, chat_id, text, buttons, entities=None):
        message = await _translated(self.bot.send_message(chat_id, text, reply_markup=_markup(buttons),
                                                          entities=_entities(entities)))
        return message.message_id

    async def send_photo(self, chat_id, file, filename, caption, buttons):
        return await _translated(self.bot.send_photo(chat_id, _file(file, filename), caption=caption,
                                                        reply_markup=_markup(buttons)))

    async def send_animation(self, chat_id, file, filename):
        return await _translated(self.bot.send_animation(chat_id, _file(file, filename)))

    async def send_sticker(self, chat_id, file, filename):
        return await _translated(self.bot.send_sticker(chat_id, _file(file, filename)))

    async def edit(self, chat_id, message_id, text, buttons, caption, entities=None):
        if caption:
            await _translated(self.bot.edit_message_caption(chat_id=chat_id, message_id=message_id, caption=text,
                                                            reply_markup=_markup(buttons),
                                                            caption_entities=_entities(entities)))
        else:
            await _translated(self.bot.edit_message_text(text=text, chat_id=chat_id, message_id=message_id,
                                                         reply_markup=_markup(buttons), entities=_entities(entities)))

    async def edit_media(self, chat_id, message_id, file, filename, caption, buttons):
        media = InputMediaPhoto(media=BufferedInputFile(file, filename=filename), caption=caption)
        await _translated(self.bot.edit_message_media(media=media, chat_id=chat_id, message_id=message_id,
                                                      reply_markup=_markup(buttons)))

    async def edit_markup(self, chat_id, message_id, buttons):
        await _translated(self.bot.edit_message_reply_markup(chat_id=chat_id, message_id=message_id,
                                                             reply_markup=_markup(buttons)))

    async def answer_callback(self, callback_id, text, alert, url=None):
        await _translated(self.bot.answer_callback_query(callback_id, text=text or None, show_alert=alert,
                                                         url=url))

    async def username(self):
        if getattr(self, "_username", None) is None:
            self._username = (await _translated(self.bot.me())).username
        return self._username

    async def answer_inline_query(self, inline_query_id, stickers, cache_time, is_personal, next_offset):
        results = [InlineQueryResultCachedSticker(id=result_id, sticker_file_id=file_id)
                   for result_id, file_id in stickers]
        await _translated(self.bot.answer_inline_query(inline_query_id=inline_query_id, results=results,
                                                       cache_time=cache_time, is_personal=is_personal,
                                                       next_offset=next_offset))

    async def set_commands(self, language, commands):
        await _translated(self.bot.set_my_commands([BotCommand(command=c, description=d) for c, d in commands],
                                                   language_code=language))

    async def set_webhook(self, url, secret):
        await _translated(self.bot.set_webhook(url=url, secret_token=secret, allowed_updates=ALLOWED_UPDATES))


class AiogramShell:
    framework = "aiogram"

    def __init__(self, token: str, api_base: str, runtime_factory: Callable[[Sender], Runtime]):
        # aiogram's documented way to use another Bot API server.
        session = AiohttpSession(api=TelegramAPIServer.from_base(api_base))
        self.bot = Bot(token, session=session)
        self.runtime: Runtime = runtime_factory(AiogramSender(self.bot))

    async def open(self) -> None:
        """Ready to call the Bot API (nothing to do for aiogram)."""

    async def start(self, polling: bool = True, poll_timeout: int = 10, outbox: bool = True) -> None:
        self.runtime.start_background(polling=polling, poll_timeout=poll_timeout, outbox=outbox)

    async def feed(self, update: dict) -> None:
        """An update from our webhook receiver: stored before the receiver answers Telegram."""
        await self.runtime.receive([update])

    async def stop(self) -> None:
        await self.runtime.stop()
        await self.bot.session.close()
