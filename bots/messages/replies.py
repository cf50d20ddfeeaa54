"""What the bot does in reply to a player (`Reply` and its kinds, gathered in an `Outgoing`), and
their JSON form, kept with the update they answer until they are delivered (bots/inbox.py).

Each kind is delivered by one handler in bots/delivery/. Every reply shortens itself to Telegram's
limits when it is built (bots/messages/limits.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from bots.messages.limits import CAPTION_LIMIT, TEXT_LIMIT, Buttons, fit_buttons, fit_entities, fit_text, shorten
from core.views import StickerView


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
    # A deep-link payload: the presser's client opens t.me/<this bot>?start=<start> (a private chat
    # with the bot), e.g. to join the game from a group without posting there.
    start: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", shorten(self.text, 200))  # Telegram: 0-200 characters


@dataclass(frozen=True)
class GroupRoundScreen:
    """A group round's one message (bots/delivery/group_rounds.py): rendered from the round as it
    stands when it is sent, so a late edit never shows an older state than the one before it. Sent
    the first time (its id recorded on the round), edited after; `message_id`: the pressed message."""

    round_id: int
    message_id: int | None = None


INLINE_RESULTS = 50  # answerInlineQuery: at most 50 results
INLINE_OFFSET_BYTES = 64  # next_offset: at most 64 bytes


@dataclass(frozen=True)
class AnswerInline:
    """The answer to an inline query: stickers as (result id, file_id of this bot) pairs, shown in
    this order, with how long Telegram may cache them, for everyone or only for this person, and
    the offset that asks for the next page ("" for none)."""

    inline_query_id: str
    results: list[tuple[str, str]]
    cache_time: int = 300
    personal: bool = False
    next_offset: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "results", [tuple(r) for r in self.results[:INLINE_RESULTS]])
        if len(self.next_offset.encode()) > INLINE_OFFSET_BYTES:
            object.__setattr__(self, "next_offset", "")


Reply = (SendText | SendSticker | SendGrid | EditText | AnswerCallback | LiveText | LivePhoto | Expire
         | GroupRoundScreen | AnswerInline)


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
                                  "expire": Expire, "group_round": GroupRoundScreen, "inline": AnswerInline}
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
