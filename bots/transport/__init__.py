"""Talking to Telegram: the `Sender` seam each framework shell implements (ptb_shell, aiogram_shell),
the errors shells translate theirs into, pacing under Telegram's limits, and the one send policy
every Bot API call goes through."""

from bots.transport.errors import (
    OUTAGE_ERRORS,
    ChatMigrated,
    Conflict,
    Forbidden,
    Owed,
    Rejected,
    RetryAfter,
    TelegramError,
    Transient,
    Unauthorized,
    UnexpectedError,
    message_gone,
    names_method,
    not_modified,
)
from bots.transport.policy import Attempts, SendPolicy, TelegramGate
from bots.transport.sender import ALLOWED_UPDATES, Sender

__all__ = ["ALLOWED_UPDATES", "OUTAGE_ERRORS", "Attempts", "ChatMigrated", "Conflict", "Forbidden", "Owed",
           "Rejected", "RetryAfter", "SendPolicy", "Sender", "TelegramError", "TelegramGate", "Transient",
           "Unauthorized", "UnexpectedError", "message_gone", "names_method", "not_modified"]
