"""The python-telegram-bot shell: an Application whose one handler hands every update to the
shared runtime, and a Sender made of Bot calls. No game logic here."""

from __future__ import annotations

import os
import warnings
from datetime import timedelta

# Opt in to PTB 22's coming behaviour (retry_after as a timedelta), which we handle, and which
# silences its deprecation warning on every 429.
os.environ.setdefault("PTB_TIMEDELTA", "1")

from telegram import Bot, BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Update
from telegram import error as tg_error
from telegram.ext import Application, ApplicationBuilder, ContextTypes, TypeHandler

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


def _markup(buttons: Buttons | None) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data) for label, data in row]
                                 for row in buttons])


async def _translated(call):
    """PTB's errors as the runtime's (bots/runtime.py); every TelegramError becomes one of them."""
    try:
        return await call
    except tg_error.RetryAfter as error:
        with warnings.catch_warnings():  # PTB 22 warns that retry_after becomes a timedelta
            warnings.simplefilter("ignore")
            wait = error.retry_after
        seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
        raise RetryAfter(seconds) from None
    except tg_error.ChatMigrated as error:
        raise ChatMigrated(int(error.new_chat_id)) from None
    except tg_error.Forbidden as error:
        raise Forbidden(str(error)) from None
    except tg_error.InvalidToken as error:  # PTB's name for 401 (and the 404 of a malformed token)
        raise Unauthorized(str(error)) from None
    except tg_error.Conflict as error:
        raise Conflict(str(error)) from None
    except (tg_error.BadRequest, tg_error.EndPointNotFound) as error:  # before NetworkError, BadRequest's base
        raise Rejected(str(error)) from None
    except (tg_error.TimedOut, tg_error.NetworkError) as error:
        raise Transient(str(error)) from None
    except tg_error.TelegramError as error:
        raise UnexpectedError(f"{type(error).__name__}: {error}") from None


class PtbSender:
    def __init__(self, bot: Bot):
        self.bot = bot

    async def send_text(self, chat_id, text, buttons):
        message = await _translated(self.bot.send_message(chat_id, text, reply_markup=_markup(buttons)))
        return message.message_id

    async def send_photo(self, chat_id, file, filename, caption, buttons):
        return await _translated(self.bot.send_photo(chat_id, file, caption=caption, reply_markup=_markup(buttons),
                                                        filename=filename or None))

    async def send_animation(self, chat_id, file, filename):
        return await _translated(self.bot.send_animation(chat_id, file, filename=filename or None))

    async def send_sticker(self, chat_id, file, filename):
        return await _translated(self.bot.send_sticker(chat_id, file if isinstance(file, str) else
                                                          InputFile(file, filename=filename)))

    async def edit(self, chat_id, message_id, text, buttons, caption):
        if caption:
            await _translated(self.bot.edit_message_caption(chat_id=chat_id, message_id=message_id, caption=text,
                                                            reply_markup=_markup(buttons)))
        else:
            await _translated(self.bot.edit_message_text(text, chat_id=chat_id, message_id=message_id,
                                                         reply_markup=_markup(buttons)))

    async def answer_callback(self, callback_id, text, alert):
        await _translated(self.bot.answer_callback_query(callback_id, text=text or None, show_alert=alert))

    async def set_commands(self, language, commands):
        await _translated(self.bot.set_my_commands([BotCommand(c, d) for c, d in commands], language_code=language))

    async def set_webhook(self, url, secret):
        await _translated(self.bot.set_webhook(url, secret_token=secret))


def build_application(token: str, api_base: str) -> Application:
    """An Application pointed at `api_base` through PTB's documented base_url settings."""
    return (ApplicationBuilder().token(token).base_url(f"{api_base}/bot").base_file_url(f"{api_base}/file/bot")
            .concurrent_updates(True).build())


class PtbShell:
    framework = "ptb"

    def __init__(self, token: str, api_base: str, runtime_factory):
        self.application = build_application(token, api_base)
        self.runtime: BotRuntime = runtime_factory(PtbSender(self.application.bot))
        self.application.add_handler(TypeHandler(Update, self._on_update))

    async def _on_update(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        incoming = incoming_from_update(update.to_dict())
        if incoming is not None:
            await self.runtime.process(incoming)

    async def start(self, polling: bool = True, poll_timeout: int = 10) -> None:
        await self.application.initialize()
        await self.application.start()
        if polling:
            await self.application.updater.start_polling(poll_interval=0, timeout=poll_timeout)

    async def feed(self, update: dict) -> None:
        """An update from our webhook receiver."""
        await self.application.update_queue.put(Update.de_json(update, self.application.bot))

    async def stop(self) -> None:
        if self.application.updater.running:
            await self.application.updater.stop()
        await self.application.stop()
        await self.application.shutdown()
