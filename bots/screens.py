"""Framework-neutral values that flow between the conversation layer and the Telegram shells:
what a player did (`Incoming`) and what the bot does in reply (`Reply` and its kinds).

Every reply is made to fit Telegram's limits when it is built (`SendText`, `SendGrid` and
`EditText` shorten themselves), so no screen can be refused for its size, whatever the data in it:
text 4,096 and captions 1,024 (counted in UTF-16 code units, as Telegram counts), at most 8 buttons
a row and 100 a keyboard, button labels kept short, and callback data of 1–64 bytes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from core.views import StickerView
from core.vocabulary import LANGUAGES, Language

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
    return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text) if _has_surrogate(text) else text


def _has_surrogate(text: str) -> bool:
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


def quoted(texts, language: str = "en") -> str:
    """Quoted texts as a list in the language's own punctuation: “a”, “b” in English; “a”、“b” in
    Chinese (the enumeration comma, no space)."""
    separator = "、" if language == "zh" else ", "
    return separator.join(f"“{text}”" for text in texts)


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


@dataclass(frozen=True)
class Incoming:
    kind: str  # command | text | callback | sticker | edited | other
    user_id: int
    chat_id: int
    update_id: int
    display_name: str = ""
    language_code: str | None = None
    text: str = ""
    command: str = ""
    args: str = ""
    callback_id: str | None = None
    callback_data: str = ""
    message_id: int | None = None  # the message a pressed button belongs to
    # What that message is, as the press shows it: a photo (edited by caption) and still with buttons.
    message_is_photo: bool = False
    message_has_buttons: bool = True


@dataclass(frozen=True)
class SendText:
    text: str
    buttons: Buttons | None = None
    # Telegram message entities (e.g. a text_link to tg://user?id=…), offsets in UTF-16 units. The
    # text is always sent plain, never parsed as markup, so player-written text needs no escaping.
    entities: list[dict] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", fit_text(self.text, TEXT_LIMIT))
        object.__setattr__(self, "buttons", fit_buttons(self.buttons))
        object.__setattr__(self, "entities", fit_entities(self.entities, self.text))


@dataclass(frozen=True)
class SendSticker:
    sticker: StickerView


@dataclass(frozen=True)
class SendGrid:
    """A numbered grid image of stickers (tile n is stickers[n-1]), with a caption and buttons."""

    stickers: list[StickerView]
    caption: str
    buttons: Buttons | None = None
    highlight: int | None = None  # 1-based tile to outline (the labeler's own sticker in a preview)

    def __post_init__(self) -> None:
        object.__setattr__(self, "caption", shorten(self.caption, CAPTION_LIMIT))
        object.__setattr__(self, "buttons", fit_buttons(self.buttons))


@dataclass(frozen=True)
class EditText:
    """Edit the text (or caption, for a grid) and the buttons of the message a button was on."""

    message_id: int
    text: str
    buttons: Buttons | None = None
    caption: bool = False
    entities: list[dict] | None = None  # as in SendText

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", fit_text(self.text, CAPTION_LIMIT if self.caption else TEXT_LIMIT))
        object.__setattr__(self, "buttons", fit_buttons(self.buttons))
        object.__setattr__(self, "entities", fit_entities(self.entities, self.text))


@dataclass(frozen=True)
class LiveText:
    """The text message of a task's live screen (`screen`: "label:<round>", "retrieval:<task>"):
    sent the first time, then edited in place. The runtime finds the message in the LiveScreen
    table (a screen's message ids are known only once sent). `fresh` moves the screen to the
    bottom of the chat: the old message says `moved` and loses its buttons, a new one is sent.
    `final`: the task is over (the text is its outcome): the screen is no longer live."""

    screen: str
    text: str
    buttons: Buttons | None = None
    fresh: bool = False
    moved: str = ""
    final: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", fit_text(self.text, TEXT_LIMIT))
        object.__setattr__(self, "buttons", fit_buttons(self.buttons))
        object.__setattr__(self, "moved", shorten(self.moved, CAPTION_LIMIT))


@dataclass(frozen=True)
class LivePhoto:
    """The photo message of a task's live screen: the sticker, a preview grid, the retrieval grid.
    `stickers` None keeps the image and changes only the caption and buttons (editMessageCaption);
    otherwise the image is replaced (editMessageMedia). `highlight`: the tile to outline."""

    screen: str
    stickers: list[StickerView] | None
    caption: str = ""
    buttons: Buttons | None = None
    highlight: int | None = None
    fresh: bool = False
    moved: str = ""
    final: bool = False
    on_message: int | None = None  # the message pressed: edited when the screen has no record (sent before them)

    def __post_init__(self) -> None:
        object.__setattr__(self, "caption", shorten(self.caption, CAPTION_LIMIT))
        object.__setattr__(self, "buttons", fit_buttons(self.buttons))
        object.__setattr__(self, "moved", shorten(self.moved, CAPTION_LIMIT))


@dataclass(frozen=True)
class Expire:
    """A screen that is no longer live, pressed: its text (or caption) becomes `text` and its
    buttons go. A message that is part of a live screen is left alone."""

    message_id: int
    text: str
    caption: bool = False  # the message is a photo

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", fit_text(self.text, CAPTION_LIMIT))


@dataclass(frozen=True)
class AnswerCallback:
    text: str = ""
    alert: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", shorten(self.text, 200))  # Telegram: 0-200 characters


Reply = SendText | SendSticker | SendGrid | EditText | AnswerCallback | LiveText | LivePhoto | Expire


@dataclass
class Outgoing:
    chat_id: int
    replies: list[Reply] = field(default_factory=list)
    callback_id: str | None = None
    player_id: int | None = None
    # Held outbox notices folded into these replies, and the index of the reply they head: they are
    # marked sent once that reply went out (a later reply failing must not show them again).
    outbox_ids: list[int] = field(default_factory=list)
    notices_at: int | None = None


_REPLY_KINDS: dict[str, type] = {"text": SendText, "sticker": SendSticker, "grid": SendGrid, "edit": EditText,
                                  "answer": AnswerCallback, "live_text": LiveText, "live_photo": LivePhoto,
                                  "expire": Expire}
_KIND_OF = {cls: kind for kind, cls in _REPLY_KINDS.items()}


def encode_outgoing(outgoing: Outgoing) -> dict:
    """An Outgoing as JSON, to be stored with the update it answers until it is delivered."""
    replies = []
    for reply in outgoing.replies:
        fields = dataclasses.asdict(reply)
        fields["kind"] = _KIND_OF[type(reply)]
        replies.append(fields)
    return {"chat_id": outgoing.chat_id, "callback_id": outgoing.callback_id, "player_id": outgoing.player_id,
            "replies": replies, "outbox_ids": list(outgoing.outbox_ids), "notices_at": outgoing.notices_at}


def decode_outgoing(data: dict) -> Outgoing:
    replies: list[Reply] = []
    for fields in data["replies"]:
        fields = dict(fields)
        kind = _REPLY_KINDS[fields.pop("kind")]
        if "buttons" in fields and fields["buttons"] is not None:
            fields["buttons"] = [[tuple(button) for button in row] for row in fields["buttons"]]
        if fields.get("sticker") is not None:
            fields["sticker"] = StickerView(**fields["sticker"])
        if fields.get("stickers") is not None:
            fields["stickers"] = [StickerView(**sticker) for sticker in fields["stickers"]]
        replies.append(kind(**fields))
    return Outgoing(data["chat_id"], replies, callback_id=data.get("callback_id"), player_id=data.get("player_id"),
                    outbox_ids=list(data.get("outbox_ids") or []), notices_at=data.get("notices_at"))


LOCALES = Path(__file__).resolve().parent / "locales"


class Catalogue:
    """Every user-facing string, one JSON catalogue per language."""

    def __init__(self, language: str):
        self.language = language
        self.strings = _load(language)

    def __call__(self, key: str, **values) -> str:
        """The text of `key` filled with `values`. A key may have plural forms, {"one": …, "other": …}
        (CLDR's categories: English has both, Chinese only "other"), chosen by the value `count`, or
        by the value the entry's "by" names ({"by": "points", "one": "+1 point", "other": …}).
        A value named `status` (a query's status, an internal code) is shown as the language's word
        for it (the catalogue's "status" section), one named `language` ("en", "zh") as the
        language's name (the "languages" section)."""
        values = self._translated(values)
        return self._form(self.strings[key], values).format(**values)

    def error(self, code: str, detail: str = "") -> str:
        """The player's message for an engine error code. `detail` is the value the message shows
        (a limit); an exception's "code: detail" text is reduced to the detail, so no code leaks."""
        errors = self.strings["error"]
        detail = str(detail or "").removeprefix(f"{code}:").strip()
        return self._form(errors.get(code, errors["unknown"]), {"detail": detail}).format(detail=detail)

    def status(self, code) -> str:
        """The word for a status code (accepted, corrected…) in this language; never the code itself
        unless the catalogue lacks it."""
        code = str(code)
        return self.strings.get("status", {}).get(code, code)

    def language_name(self, code) -> str:
        """The name of a game language ("en", "zh") in this language."""
        code = str(code)
        return self.strings.get("languages", {}).get(code, code)

    def _translated(self, values: dict) -> dict:
        if values.get("status") is not None:
            values = {**values, "status": self.status(values["status"])}
        if values.get("language") is not None:
            values = {**values, "language": self.language_name(values["language"])}
        return values

    def _form(self, text, values: dict) -> str:
        if isinstance(text, dict):
            return text.get(plural_category(self.language, values.get(text.get("by", "count")))) or text["other"]
        return text


def plural_category(language: str, count) -> str:
    """CLDR plural category of `count` for the two languages the game speaks."""
    if isinstance(count, str) and count.strip().isdigit():
        count = int(count)
    if language == "en" and count == 1:
        return "one"
    return "other"


@cache
def _load(language: str) -> dict:
    return json.loads((LOCALES / f"{language}.json").read_text(encoding="utf-8"))


def catalogue(language: str | None) -> Catalogue:
    return Catalogue(language if language in LANGUAGES else Language.EN)


COMMANDS = {
    "en": [("play", "Next task"), ("me", "Your points"), ("name", "Your nickname"), ("top", "Leaderboard"),
           ("lang", "Language"), ("help", "Rules"), ("stop", "Pause"), ("forget", "Withdraw consent")],
    "zh": [("play", "下一个任务"), ("me", "我的积分"), ("name", "我的昵称"), ("top", "排行榜"), ("lang", "语言"),
           ("help", "规则"), ("stop", "暂停"), ("forget", "撤回同意")],
}


def incoming_from_update(update: dict) -> Incoming | None:
    """A Bot API update (as JSON, whichever framework parsed it) as a player action, or None
    for an update that is no move in the game. An update without a sender (`from`) or a chat is
    skipped with one log line: it must not become a player with id 0 shared by several chats."""
    update_id = update.get("update_id")
    if type(update_id) is not int:
        return _skipped(update_id, "no update_id")
    if "callback_query" in update:
        query = update["callback_query"]
        if not isinstance(query, dict):
            return _skipped(update_id, "a button press that is not an object")
        user = _sender(query)
        if user is None:
            return _skipped(update_id, "a button press without a sender")
        message = query.get("message") if isinstance(query.get("message"), dict) else {}
        chat = message.get("chat") if isinstance(message.get("chat"), dict) else {}
        chat_id = chat.get("id", user["id"])
        if type(chat_id) is not int:
            return _skipped(update_id, "a button press in a chat without an id")
        data = query.get("data")
        return Incoming("callback", user["id"], chat_id, update_id, _name(user), _language_code(user),
                        callback_id=str(query.get("id")), callback_data=data if isinstance(data, str) else "",
                        message_id=message.get("message_id") if type(message.get("message_id")) is int else None,
                        message_is_photo="photo" in message,
                        message_has_buttons=bool(message.get("reply_markup")) or not message)
    for key, kind in (("message", None), ("edited_message", "edited")):
        if key not in update:
            continue
        message = update[key]
        if not isinstance(message, dict):
            return _skipped(update_id, f"a {key} that is not an object")
        chat = message.get("chat")
        if not isinstance(chat, dict) or type(chat.get("id")) is not int:
            return _skipped(update_id, f"a {key} without a chat")
        if chat.get("type", "private") != "private":
            return None  # groups come later; nothing in a group is a move in the game yet
        user = _sender(message)
        if user is None:
            return _skipped(update_id, f"a {key} without a sender")
        common = dict(user_id=user["id"], chat_id=chat["id"], update_id=update_id,
                      display_name=_name(user), language_code=_language_code(user))
        text = message.get("text")
        if text is not None and not isinstance(text, str):
            return _skipped(update_id, f"a {key} whose text is not a string")
        if text is not None and _has_surrogate(text):
            return Incoming("unreadable", **common)  # answered with a message, never echoed
        if kind:
            return Incoming(kind, **common, text=text or "")
        if text is None:
            return Incoming("sticker" if "sticker" in message else "other", **common)
        if text.startswith("/"):
            head, _, args = text[1:].partition(" ")
            return Incoming("command", **common, text=text, command=head.split("@")[0].lower(), args=args)
        return Incoming("text", **common, text=text)
    return None


def _skipped(update_id, reason: str) -> None:
    log.warning("skipped update %r: %s", update_id, reason)
    return None


def _sender(holder: dict) -> dict | None:
    user = holder.get("from")
    if not isinstance(user, dict) or type(user.get("id")) is not int or user["id"] <= 0:
        return None
    return user


def _language_code(user: dict) -> str | None:
    code = user.get("language_code")
    return code if isinstance(code, str) else None


def _name(user: dict) -> str:
    parts = [p for p in (user.get("first_name"), user.get("last_name")) if isinstance(p, str) and p]
    name = " ".join(parts) or (user.get("username") if isinstance(user.get("username"), str) else "") or ""
    return without_surrogates(name)[:128]
