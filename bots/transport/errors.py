"""The errors a shell translates its framework's into: what the rest of bots/ knows of Telegram's
answers, whichever framework made the call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class TelegramError(Exception):
    method: str | None = None  # the Bot API method that failed (sendMessage), named by `names_method`


def names_method(translate: Callable[[Awaitable[T]], Awaitable[T]]):
    """For a shell's error translation: the errors it raises carry the Bot API method (sendMessage,
    from the framework's send_message), which the metrics count failed calls by."""
    async def translated(call: Awaitable[T]) -> T:
        try:
            return await translate(call)
        except TelegramError as error:
            name = getattr(call, "__name__", "") or ""
            error.method = "".join(word if i == 0 else word.capitalize() for i, word in enumerate(name.split("_")))
            raise
    return translated


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


class UnexpectedError(TelegramError):
    """Any other error the framework reports: not known to be permanent, so worth a later try."""


class Owed(TelegramError):
    """Not sent now, still owed: Telegram is away (this call failed, or the gate holds calls back
    until the next probe). `attempted` says whether this call spent an attempt."""

    def __init__(self, reason: str, attempted: bool):
        super().__init__(reason)
        self.attempted = attempted


# Failures that mean "Telegram (or the way to it) is not answering now", not "this call is wrong".
OUTAGE_ERRORS = (Transient, UnexpectedError, Conflict)


def not_modified(error: TelegramError) -> bool:
    """Telegram's answer to an edit that changes nothing: the message already shows it (success)."""
    return "message is not modified" in str(error).lower()


def message_gone(error: TelegramError) -> bool:
    """An edit Telegram refuses because the message cannot be edited any more: send anew."""
    text = str(error).lower()
    return any(words in text for words in ("message to edit not found", "message can't be edited",
                                           "message_id_invalid", "there is no text in the message",
                                           "there is no caption in the message", "there is no media"))
