"""The python-telegram-bot shell: a Sender made of the Bot's calls, and PTB's reading of an update.
Receiving (long polling into the inbox, or a webhook) is the shared runtime's, so that no update is
acknowledged to Telegram before it is stored. No game logic here."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import urlencode

from telegram import (
    Bot,
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultCachedSticker,
    InputFile,
    InputMediaPhoto,
    MessageEntity,
    Update,
)
from telegram import error as tg_error
from telegram.ext import Application, ApplicationBuilder

from bots.messages.limits import Buttons
from bots.startup import ptb_timedelta
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

ptb_timedelta()  # see bots/startup.py


def _markup(buttons: Buttons | None) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data) for label, data in row]
                                 for row in buttons])


def _entities(entities: list[dict] | None) -> list[MessageEntity] | None:
    return [MessageEntity(**entity) for entity in entities] if entities else None


@names_method
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

    async def get_updates(self, offset, timeout):
        # Through the Bot's own request object, to get the updates as JSON: Bot.get_updates parses
        # the whole batch and one update it cannot read would fail them all.
        params = {"timeout": timeout, "allowed_updates": json.dumps(ALLOWED_UPDATES)}
        if offset is not None:
            params["offset"] = offset
        return await _translated(self.bot.request.post(f"{self.bot.base_url}/getUpdates?{urlencode(params)}",
                                                       read_timeout=timeout + 10))

    def parse_update(self, raw):
        update = Update.de_json(raw, self.bot)
        if update is None:
            raise ValueError("not an update")
        return update.to_dict()

    async def send_text(self, chat_id, text, buttons, entities=None):
        message = await _translated(self.bot.send_message(chat_id, text, reply_markup=_markup(buttons),
                                                          entities=_entities(entities)))
        return message.message_id

    async def send_photo(self, chat_id, file, filename, caption, buttons):
        return await _translated(self.bot.send_photo(chat_id, file, caption=caption, reply_markup=_markup(buttons),
                                                        filename=filename or None))

    async def send_animation(self, chat_id, file, filename):
        return await _translated(self.bot.send_animation(chat_id, file, filename=filename or None))

    async def send_sticker(self, chat_id, file, filename):
        return await _translated(self.bot.send_sticker(chat_id, file if isinstance(file, str) else
                                                          InputFile(file, filename=filename)))

    async def edit(self, chat_id, message_id, text, buttons, caption, entities=None):
        if caption:
            await _translated(self.bot.edit_message_caption(chat_id=chat_id, message_id=message_id, caption=text,
                                                            reply_markup=_markup(buttons),
                                                            caption_entities=_entities(entities)))
        else:
            await _translated(self.bot.edit_message_text(text, chat_id=chat_id, message_id=message_id,
                                                         reply_markup=_markup(buttons), entities=_entities(entities)))

    async def edit_media(self, chat_id, message_id, file, filename, caption, buttons):
        media = InputMediaPhoto(file, caption=caption, filename=filename)  # uploaded as attach://<name>
        await _translated(self.bot.edit_message_media(media, chat_id=chat_id, message_id=message_id,
                                                      reply_markup=_markup(buttons)))

    async def edit_markup(self, chat_id, message_id, buttons):
        await _translated(self.bot.edit_message_reply_markup(chat_id=chat_id, message_id=message_id,
                                                             reply_markup=_markup(buttons)))

    async def answer_callback(self, callback_id, text, alert, url=None):
        await _translated(self.bot.answer_callback_query(callback_id, text=text or None, show_alert=alert,
                                                         url=url))

    async def username(self):
        if getattr(self, "_username", None) is None:
            self._username = (await _translated(self.bot.get_me())).username
        return self._username

    async def answer_inline_query(self, inline_query_id, stickers, cache_time, is_personal, next_offset):
        results = [InlineQueryResultCachedSticker(result_id, file_id) for result_id, file_id in stickers]
        await _translated(self.bot.answer_inline_query(inline_query_id, results, cache_time=cache_time,
                                                       is_personal=is_personal, next_offset=next_offset))

    async def set_commands(self, language, commands):
        await _translated(self.bot.set_my_commands([BotCommand(c, d) for c, d in commands], language_code=language))

    async def set_webhook(self, url, secret):
        await _translated(self.bot.set_webhook(url, secret_token=secret, allowed_updates=ALLOWED_UPDATES))


def build_application(token: str, api_base: str) -> Application:
    """An Application pointed at `api_base` through PTB's documented base_url settings. A send that
    times out is sent again and may then reach the chat twice, so answers get as long to come as
    aiogram gives them (60 s) rather than PTB's 5 s, which a busy server or an upload can exceed."""
    return (ApplicationBuilder().token(token).base_url(f"{api_base}/bot").base_file_url(f"{api_base}/file/bot")
            .read_timeout(60).write_timeout(60).media_write_timeout(60).concurrent_updates(True).build())


class PtbShell:
    framework = "ptb"

    def __init__(self, token: str, api_base: str, runtime_factory: Callable[[Sender], Runtime]):
        self.application = build_application(token, api_base)
        self.runtime: Runtime = runtime_factory(PtbSender(self.application.bot))
        self._opened = False

    async def open(self) -> None:
        """Ready to call the Bot API (PTB's Bot must be initialized first)."""
        if not self._opened:
            await self.application.initialize()
            self._opened = True

    async def start(self, polling: bool = True, poll_timeout: int = 10, outbox: bool = True) -> None:
        await self.open()
        self.runtime.start_background(polling=polling, poll_timeout=poll_timeout, outbox=outbox)

    async def feed(self, update: dict) -> None:
        """An update from our webhook receiver: stored before the receiver answers Telegram."""
        await self.runtime.receive([update])

    async def stop(self) -> None:
        await self.runtime.stop()
        await self.application.shutdown()
