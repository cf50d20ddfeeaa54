"""Logging for every command: secrets stay out of it.

Two layers. The HTTP clients under the Telegram frameworks log each request's URL at INFO, and a
Bot API URL holds the bot token (``…/bot123:ABC/getUpdates``): their loggers are set to WARNING.
As a safety net, `RedactingFilter` sits on every handler and replaces, in each record's message
and traceback, the configured secrets and anything shaped like a bot token or a Bot API URL.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

# Loggers that would write request URLs (and so tokens) at INFO or DEBUG.
HTTP_LOGGERS = ("httpx", "httpcore", "hpack", "urllib3", "aiohttp.client", "telegram.request",
                "aiogram.client", "telegram.ext.Updater", "telegram.ext._updater")
MASK = "«redacted»"
# A Bot API path (/bot<token>/ or /file/bot<token>/) and a bare token as @BotFather issues them. The
# path pattern wants a token's shape (digits, a colon, then the secret), so that paths such as
# ".../bots/runtime.py" in a traceback stay as they are.
_BOT_PATH = re.compile(r"(/bot)\d+:[A-Za-z0-9_-]+(?=/)")
_TOKEN_SHAPE = re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{30,}\b")


class RedactingFilter(logging.Filter):
    """Rewrites a record so that no secret is in its message, arguments or traceback."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self.secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        self.secrets.update(s for s in secrets if s and len(s) >= 4)
        ordered = sorted(self.secrets, key=len, reverse=True)  # a secret inside another goes second
        self._pattern = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None

    def redact(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return _TOKEN_SHAPE.sub(MASK, _BOT_PATH.sub(rf"\1{MASK}", text))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what there is
            message = str(record.msg)
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def protect(secrets: Iterable[str] = ()) -> RedactingFilter:
    """Quiet the HTTP loggers and put the redacting filter on every handler of the root logger
    (and on logging's last-resort handler). Call again after adding handlers; it is idempotent."""
    _FILTER.add(secrets)
    for name in HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)
    handlers = list(logging.getLogger().handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    return _FILTER


def setup(level: int = logging.INFO, secrets: Iterable[str] = (), log_format: str = "text") -> RedactingFilter:
    """The commands' logging: one line a record on stderr (text, or one JSON object: sticktionary/log_json.py),
    secrets kept out of either."""
    if log_format == "json":
        from sticktionary.log_json import JsonFormatter

        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter(_FILTER))
        logging.basicConfig(level=level, handlers=[handler])
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return protect(secrets)
