"""STICKTIONARY_LOG_FORMAT=json: one JSON object per line, for log collectors.

    {"time": "2026-12-06T17:40:01.123Z", "level": "INFO", "logger": "bots.runtime", "message": "…",
     "bot": "en", "update_id": 812, "player_id": 17, "exception": "Traceback …"}

`bot`, `update_id` and `player_id` come from the update being handled (bots/log_context.py), or from
the record's own attributes of those names (`log.info(…, extra={"bot": key})`); absent when unknown.
The redacting filter (sticktionary/logs.py) has rewritten the message and traceback before this
formatter sees them; every text field is passed through it once more here, so that nothing added
after the filter ran (an `extra` value, a traceback formatted late) can carry a secret.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from bots.log_context import log_fields

CONTEXT_FIELDS = ("bot", "update_id", "player_id")


class JsonFormatter(logging.Formatter):
    def __init__(self, redactor) -> None:
        super().__init__()
        self.redactor = redactor  # a RedactingFilter: its redact(text)

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        entry: dict = {"time": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
                       "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        entry.update(log_fields())
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if isinstance(value, str | int) and not isinstance(value, bool):
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps({key: self.redactor.redact(value) if isinstance(value, str) else value
                           for key, value in entry.items()}, ensure_ascii=False)


__all__ = ["JsonFormatter"]
