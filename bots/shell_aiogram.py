"""The aiogram shell: a Dispatcher whose handlers hand every update to the shared runtime, and a
Sender made of Bot calls. No game logic here."""

from __future__ import annotations

import asyncio
import contextlib

from aiogram import Bot, Dispatcher
from aiogram import methods as aiogram_methods
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
from aiogram.methods.base import Response, TelegramMethod
from aiogram.types import BotCommand, BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup, Update

from bots.runtime import (
    BotRuntime,
    ChatMigrated,
    Conflict,
    Forbidden,
    Rejected,
    RetryAfter,
    Transient,
    Unauthorized,
    UnexpectedError,
)
from bots.screens import Buttons, incoming_from_update


def _response_models() -> dict:
    """aiogram parses every Bot API reply as `Response[method.__returning__]`. pydantic keeps
    parametrised generic models in a WeakValueDictionary, so with no other reference the class is
    garbage collected and rebuilt (about 3 ms) on most calls: measured, a sixth of the bot process's
    CPU under load. Holding one of each for the life of the process makes them built once."""
    models = {}
    for method in vars(aiogram_methods).values():
        if isinstance(method, type) and issubclass(method, TelegramMethod) and method is not TelegramMethod:
            returning = method.__returning__
            if returning not in models:
                models[returning] = Response[returning]
    return models


_RESPONSE_MODELS = _response_models()


def _markup(buttons: Buttons | None) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text=label, callback_data=data)
                                                  for label, data in row] for row in buttons])


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

    async def send_text(self, chat_id, text, buttons):
        message = await _translated(self.bot.send_message(chat_id, text, reply_markup=_markup(buttons)))
        return message.message_id

    async def send_photo(self, chat_id, file, filename, caption, buttons):
        return await _translated(self.bot.send_photo(chat_id, _file(file, filename), caption=caption,
                                                        reply_markup=_markup(buttons)))

    async def send_animation(self, chat_id, file, filename):
        return await _translated(self.bot.send_animation(chat_id, _file(file, filename)))

    async def send_sticker(self, chat_id, file, filename):
        return await _translated(self.bot.send_sticker(chat_id, _file(file, filename)))

    async def edit(self, chat_id, message_id, text, buttons, caption):
        if caption:
            await _translated(self.bot.edit_message_caption(chat_id=chat_id, message_id=message_id, caption=text,
                                                            reply_markup=_markup(buttons)))
        else:
            await _translated(self.bot.edit_message_text(text=text, chat_id=chat_id, message_id=message_id,
                                                         reply_markup=_markup(buttons)))

    async def answer_callback(self, callback_id, text, alert):
        await _translated(self.bot.answer_callback_query(callback_id, text=text or None, show_alert=alert))

    async def set_commands(self, language, commands):
        await _translated(self.bot.set_my_commands([BotCommand(command=c, description=d) for c, d in commands],
                                                   language_code=language))

    async def set_webhook(self, url, secret):
        await _translated(self.bot.set_webhook(url=url, secret_token=secret))


class AiogramShell:
    framework = "aiogram"

    def __init__(self, token: str, api_base: str, runtime_factory):
        # aiogram's documented way to use another Bot API server.
        session = AiohttpSession(api=TelegramAPIServer.from_base(api_base))
        self.bot = Bot(token, session=session)
        self.dispatcher = Dispatcher()
        self.runtime: BotRuntime = runtime_factory(AiogramSender(self.bot))
        for observer in (self.dispatcher.message, self.dispatcher.edited_message, self.dispatcher.callback_query):
            observer.register(self._on_event)
        self._polling: asyncio.Task | None = None

    async def _on_event(self, _event, event_update: Update) -> None:
        incoming = incoming_from_update(event_update.model_dump(mode="json", by_alias=True, exclude_none=True))
        if incoming is not None:
            await self.runtime.process(incoming)

    async def start(self, polling: bool = True, poll_timeout: int = 10) -> None:
        if polling:
            self._polling = asyncio.create_task(self.dispatcher.start_polling(
                self.bot, polling_timeout=poll_timeout, handle_signals=False, close_bot_session=False))

    async def feed(self, update: dict) -> None:
        await self.dispatcher.feed_webhook_update(self.bot, update)

    async def stop(self) -> None:
        if self._polling is not None:
            with contextlib.suppress(RuntimeError):
                await self.dispatcher.stop_polling()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._polling, 10)
        await self.bot.session.close()
