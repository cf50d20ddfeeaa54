"""What the log says about the update being handled: the bot, the update id and, once known, the
player's internal id (never a Telegram name or a token).

Set where an update is handled, with `handling_update(...)`; the player is added by the conversation
once it knows them (`note_player`). JSON logs (STICKTIONARY_LOG_FORMAT=json, sticktionary/log_json.py)
carry these fields on every record written meanwhile.

A context variable is per thread and per asyncio task, and `loop.run_in_executor` does not carry it
into the executor's thread: set it in the thread that does the work (the inbox's handling runs on the
game threads), and again around the delivery in the event loop if its records should carry it too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

_EMPTY: dict[str, str | int] = {}
_context: ContextVar[dict[str, str | int]] = ContextVar("sticktionary_update", default=_EMPTY)


@contextlib.contextmanager
def handling_update(bot: str, update_id: int | None = None, player_id: int | None = None) -> Iterator[None]:
    """Records written inside carry `bot`, `update_id` and `player_id` (those not None)."""
    fields: dict[str, str | int] = {"bot": bot}
    if update_id is not None:
        fields["update_id"] = update_id
    if player_id is not None:
        fields["player_id"] = player_id
    token = _context.set(fields)
    try:
        yield
    finally:
        _context.reset(token)


def note_player(player_id: int | None) -> None:
    """The player of the update being handled, once known; outside `handling_update` it does nothing."""
    current = _context.get()
    if current and player_id is not None:
        _context.set({**current, "player_id": player_id})


def log_fields() -> dict[str, str | int]:
    """The fields of the update being handled in this thread or task (empty outside one)."""
    return dict(_context.get())


__all__ = ["handling_update", "note_player", "log_fields"]
