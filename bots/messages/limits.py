"""Telegram's limits, and the helpers that make any text, caption or keyboard fit them.

Every reply is made to fit when it is built (bots/messages/replies.py), so no screen can be refused
for its size, whatever the data in it: text 4,096 and captions 1,024 (counted in UTF-16 code units,
as Telegram counts), at most 8 buttons a row and 100 a keyboard, button labels kept short, and
callback data of 1–64 bytes.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

Buttons = list[list[tuple[str, str]]]  # rows of (label, callback_data)

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
BUTTON_LABEL_LIMIT = 64  # Telegram shows little more, and cuts labels it finds too long
BUTTONS_PER_ROW = 8
BUTTONS_PER_KEYBOARD = 100
CALLBACK_DATA_BYTES = 64
ELLIPSIS = "…"


def utf16_units(text: str) -> int:
    """Length as Telegram counts it: characters outside the BMP (most emoji) count twice."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def without_surrogates(text: str) -> str:
    """Lone surrogates cannot be encoded to send; each becomes U+FFFD."""
    return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text) if has_surrogate(text) else text


def has_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def shorten(text: str, limit: int, *, keep: str = "start") -> str:
    """`text` within `limit` UTF-16 units; when cut, a visible ellipsis marks where. keep="end"
    keeps the end (the newest messages of a chat context) and cuts the start."""
    text = without_surrogates(text)
    if utf16_units(text) <= limit:
        return text
    budget = limit - 1
    chars = reversed(text) if keep == "end" else iter(text)
    kept: list[str] = []
    for ch in chars:
        budget -= 2 if ord(ch) > 0xFFFF else 1
        if budget < 0:
            break
        kept.append(ch)
    if keep == "end":
        return ELLIPSIS + "".join(reversed(kept))
    return "".join(kept) + ELLIPSIS


def fit_text(text: str, limit: int) -> str:
    text = shorten(text, limit)
    return text if text.strip() else ELLIPSIS  # Telegram refuses an empty message


def fit_buttons(buttons: Buttons | None) -> Buttons | None:
    """Rows of at most 8, at most 100 buttons, labels short and never empty. Callback data is
    the codec's to keep within 64 bytes (bots/callbacks.py); data that is not is a bug, so it
    raises here instead of being cut into another action."""
    if not buttons:
        return buttons
    rows: Buttons = []
    total = 0
    for row in buttons:
        fitted = []
        for label, data in row:
            if total >= BUTTONS_PER_KEYBOARD:
                log.warning("a keyboard of more than %d buttons was cut", BUTTONS_PER_KEYBOARD)
                break
            size = len(data.encode("utf-8"))
            if not 1 <= size <= CALLBACK_DATA_BYTES:
                raise ValueError(f"callback data of {size} bytes: {data!r}")
            fitted.append((fit_text(label.replace("\n", " "), BUTTON_LABEL_LIMIT), data))
            total += 1
        rows.extend(fitted[i:i + BUTTONS_PER_ROW] for i in range(0, len(fitted), BUTTONS_PER_ROW))
    return [row for row in rows if row]


def fit_entities(entities: list[dict] | None, text: str) -> list[dict] | None:
    """Only entities that lie wholly inside the (possibly shortened) text; None when none do."""
    if not entities:
        return None
    size = utf16_units(text)
    kept = [dict(e) for e in entities if 0 <= e.get("offset", -1) and 0 < e.get("length", 0)
            and e["offset"] + e["length"] <= size]
    return kept or None
