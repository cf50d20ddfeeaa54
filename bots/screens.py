"""Framework-neutral values that flow between the conversation layer and the Telegram shells:
what a player did (`Incoming`) and what the bot does in reply (`Reply` and its kinds)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from core.views import StickerView

Buttons = list[list[tuple[str, str]]]  # rows of (label, callback_data)


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


@dataclass(frozen=True)
class SendText:
    text: str
    buttons: Buttons | None = None


@dataclass(frozen=True)
class SendSticker:
    sticker: StickerView


@dataclass(frozen=True)
class SendGrid:
    """A numbered grid image of stickers (tile n is stickers[n-1]), with a caption and buttons."""

    stickers: list[StickerView]
    caption: str
    buttons: Buttons | None = None


@dataclass(frozen=True)
class EditText:
    """Edit the text (or caption, for a grid) and the buttons of the message a button was on."""

    message_id: int
    text: str
    buttons: Buttons | None = None
    caption: bool = False


@dataclass(frozen=True)
class AnswerCallback:
    text: str = ""
    alert: bool = False


Reply = SendText | SendSticker | SendGrid | EditText | AnswerCallback


@dataclass
class Outgoing:
    chat_id: int
    replies: list[Reply] = field(default_factory=list)
    callback_id: str | None = None
    player_id: int | None = None


_REPLY_KINDS: dict[str, type] = {"text": SendText, "sticker": SendSticker, "grid": SendGrid, "edit": EditText,
                                  "answer": AnswerCallback}
_KIND_OF = {cls: kind for kind, cls in _REPLY_KINDS.items()}


def encode_outgoing(outgoing: Outgoing) -> dict:
    """An Outgoing as JSON, to be stored with the update it answers until it is delivered."""
    replies = []
    for reply in outgoing.replies:
        fields = dataclasses.asdict(reply)
        fields["kind"] = _KIND_OF[type(reply)]
        replies.append(fields)
    return {"chat_id": outgoing.chat_id, "callback_id": outgoing.callback_id, "player_id": outgoing.player_id,
            "replies": replies}


def decode_outgoing(data: dict) -> Outgoing:
    replies: list[Reply] = []
    for fields in data["replies"]:
        fields = dict(fields)
        kind = _REPLY_KINDS[fields.pop("kind")]
        if "buttons" in fields and fields["buttons"] is not None:
            fields["buttons"] = [[tuple(button) for button in row] for row in fields["buttons"]]
        if "sticker" in fields:
            fields["sticker"] = StickerView(**fields["sticker"])
        if "stickers" in fields:
            fields["stickers"] = [StickerView(**sticker) for sticker in fields["stickers"]]
        replies.append(kind(**fields))
    return Outgoing(data["chat_id"], replies, callback_id=data.get("callback_id"), player_id=data.get("player_id"))


LOCALES = Path(__file__).resolve().parent / "locales"


class Catalogue:
    """Every user-facing string, one JSON catalogue per language."""

    def __init__(self, language: str):
        self.language = language
        self.strings = _load(language)

    def __call__(self, key: str, **values) -> str:
        return self.strings[key].format(**values)

    def error(self, code: str, detail: str = "") -> str:
        errors = self.strings["error"]
        return errors.get(code, errors["unknown"]).format(detail=detail)


@cache
def _load(language: str) -> dict:
    return json.loads((LOCALES / f"{language}.json").read_text(encoding="utf-8"))


def catalogue(language: str | None) -> Catalogue:
    return Catalogue(language if language in ("en", "zh") else "en")


COMMANDS = {
    "en": [("play", "Next task"), ("me", "Your points"), ("top", "Leaderboard"), ("lang", "Language"),
           ("help", "Rules"), ("stop", "Pause"), ("forget", "Withdraw consent")],
    "zh": [("play", "下一个任务"), ("me", "我的积分"), ("top", "排行榜"), ("lang", "语言"),
           ("help", "规则"), ("stop", "暂停"), ("forget", "撤回同意")],
}


def incoming_from_update(update: dict) -> Incoming | None:
    """A Bot API update (as JSON, whichever framework parsed it) as a player action."""
    update_id = int(update.get("update_id", 0))
    if "callback_query" in update:
        query = update["callback_query"]
        user = query.get("from") or {}
        message = query.get("message") or {}
        chat_id = (message.get("chat") or {}).get("id", user.get("id"))
        return Incoming("callback", user.get("id", 0), chat_id, update_id, _name(user), user.get("language_code"),
                        callback_id=str(query.get("id")), callback_data=query.get("data") or "",
                        message_id=message.get("message_id"))
    for key, kind in (("message", None), ("edited_message", "edited")):
        if key not in update:
            continue
        message = update[key]
        user = message.get("from") or {}
        chat = message.get("chat") or {}
        if chat.get("type", "private") != "private":
            return None  # groups come later; nothing in a group is a move in the game yet
        common = dict(user_id=user.get("id", 0), chat_id=chat.get("id", 0), update_id=update_id,
                      display_name=_name(user), language_code=user.get("language_code"))
        text = message.get("text")
        if kind:
            return Incoming(kind, **common, text=text or "")
        if text is None:
            return Incoming("sticker" if "sticker" in message else "other", **common)
        if text.startswith("/"):
            head, _, args = text[1:].partition(" ")
            return Incoming("command", **common, text=text, command=head.split("@")[0].lower(), args=args)
        return Incoming("text", **common, text=text)
    return None


def _name(user: dict) -> str:
    return " ".join(p for p in (user.get("first_name"), user.get("last_name")) if p) or user.get("username") or ""
