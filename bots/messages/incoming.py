"""What a player did, as the conversation layer sees it (`Incoming`), parsed from a Bot API update
whichever framework received it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from bots.messages.limits import has_surrogate, without_surrogates

log = logging.getLogger(__name__)


class IncomingKind(StrEnum):
    """Every kind of update the parser produces; the router has a route for each."""

    COMMAND = "command"  # a text starting with "/": `command` and `args` are set
    TEXT = "text"
    CALLBACK = "callback"  # a button pressed: `callback_data`, and the message it was on
    STICKER = "sticker"
    EDITED = "edited"  # an edited message: the game never takes an edit as a move
    OTHER = "other"  # a photo, a voice message, anything else without text
    UNREADABLE = "unreadable"  # text with lone surrogates: answered with a message, never echoed
    GROUP_MEMBER = "group_member"  # the bot was added to a group, removed, or its rights changed
    GROUP_MIGRATED = "group_migrated"  # a group became a supergroup (`migrated_to` is its new id)
    # Inline mode, from anyone (also people who never started the bot): no player row is made for them.
    INLINE_QUERY = "inline_query"  # `@bot so tired` typed in any chat: `text`, `offset`, `inline_query_id`
    CHOSEN_INLINE = "chosen_inline"  # a result of ours sent: `result_id`, `text` (the query)


GROUP_CHATS = ("group", "supergroup")
# Kinds handled without a player: whoever sent them is served, and nothing is recorded about them.
GUEST_KINDS = frozenset({IncomingKind.INLINE_QUERY, IncomingKind.CHOSEN_INLINE})


@dataclass(frozen=True)
class Incoming:
    kind: IncomingKind
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
    chat_type: str = "private"  # "group" or "supergroup" for updates from a group (bots/handlers/groups.py)
    member_status: str = ""  # GROUP_MEMBER: the bot's new status (member, administrator, restricted, left, kicked)
    migrated_to: int | None = None  # GROUP_MIGRATED: the supergroup's id
    inline_query_id: str | None = None  # the inline query to answer (answerInlineQuery)
    offset: str = ""  # the inline query's offset: our next_offset, handed back for the next page
    result_id: str = ""  # the chosen inline result

    @property
    def in_group(self) -> bool:
        return self.chat_type in GROUP_CHATS


def incoming_from_update(update: dict) -> Incoming | None:
    """A Bot API update (as JSON, whichever framework parsed it) as a player action, or None
    for an update that is no move in the game. An update without a sender (`from`) or a chat is
    skipped with one log line: it must not become a player with id 0 shared by several chats."""
    update_id = update.get("update_id")
    if type(update_id) is not int:
        return _skipped(update_id, "no update_id")
    for key in ("inline_query", "chosen_inline_result"):
        if key in update:
            return _inline(update_id, key, update[key])
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
        return Incoming(IncomingKind.CALLBACK, user["id"], chat_id, update_id, _name(user), _language_code(user),
                        callback_id=str(query.get("id")), callback_data=data if isinstance(data, str) else "",
                        message_id=message.get("message_id") if type(message.get("message_id")) is int else None,
                        message_is_photo="photo" in message,
                        message_has_buttons=bool(message.get("reply_markup")) or not message,
                        chat_type=_chat_type(chat))
    if "my_chat_member" in update:
        return _membership(update_id, update["my_chat_member"])
    for key, kind in (("message", None), ("edited_message", IncomingKind.EDITED)):
        if key not in update:
            continue
        message = update[key]
        if not isinstance(message, dict):
            return _skipped(update_id, f"a {key} that is not an object")
        chat = message.get("chat")
        if not isinstance(chat, dict) or type(chat.get("id")) is not int:
            return _skipped(update_id, f"a {key} without a chat")
        if chat.get("type", "private") != "private":
            return _group_message(update_id, key, message, chat)
        if "via_bot" in message:
            return None  # a result of inline mode the player sent into the chat: said to the chat, not to the game
        user = _sender(message)
        if user is None:
            return _skipped(update_id, f"a {key} without a sender")
        common = dict(user_id=user["id"], chat_id=chat["id"], update_id=update_id,
                      display_name=_name(user), language_code=_language_code(user))
        text = message.get("text")
        if text is not None and not isinstance(text, str):
            return _skipped(update_id, f"a {key} whose text is not a string")
        if text is not None and has_surrogate(text):
            return Incoming(IncomingKind.UNREADABLE, **common)  # answered with a message, never echoed
        if kind:
            return Incoming(kind, **common, text=text or "")
        if text is None:
            return Incoming(IncomingKind.STICKER if "sticker" in message else IncomingKind.OTHER, **common)
        if text.startswith("/"):
            head, _, args = text[1:].partition(" ")
            return Incoming(IncomingKind.COMMAND, **common, text=text, command=head.split("@")[0].lower(), args=args)
        return Incoming(IncomingKind.TEXT, **common, text=text)
    return None


def _chat_type(chat: dict) -> str:
    kind = chat.get("type")
    return kind if isinstance(kind, str) and kind in ("private", *GROUP_CHATS) else "private"


def _group_message(update_id: int, key: str, message: dict, chat: dict) -> Incoming | None:
    """In a group only commands and the migration notice are moves (privacy mode delivers little
    else, and nothing else is read): any other message is None."""
    if _chat_type(chat) not in GROUP_CHATS or key != "message":
        return None
    migrated = message.get("migrate_to_chat_id")
    user = _sender(message)
    if type(migrated) is int:
        return Incoming(IncomingKind.GROUP_MIGRATED, user["id"] if user else 0, chat["id"], update_id,
                        chat_type=chat["type"], migrated_to=migrated)
    text = message.get("text")
    if user is None or not isinstance(text, str) or not text.startswith("/") or has_surrogate(text):
        return None
    head, _, args = text[1:].partition(" ")
    return Incoming(IncomingKind.COMMAND, user["id"], chat["id"], update_id, _name(user), _language_code(user),
                    text=text, command=head.split("@")[0].lower(), args=args, chat_type=chat["type"])


def _membership(update_id: int, change) -> Incoming | None:
    """my_chat_member: the bot's own membership of a group changed."""
    if not isinstance(change, dict):
        return _skipped(update_id, "a membership change that is not an object")
    chat = change.get("chat")
    member = change.get("new_chat_member")
    if not isinstance(chat, dict) or type(chat.get("id")) is not int or _chat_type(chat) not in GROUP_CHATS \
            or not isinstance(member, dict) or not isinstance(member.get("status"), str):
        return None  # a private chat blocked or unblocked is learnt from sends (bots/delivery/)
    status = member["status"]
    if status == "restricted" and member.get("can_send_messages") is False:
        status = "muted"
    user = _sender(change)
    return Incoming(IncomingKind.GROUP_MEMBER, user["id"] if user else 0, chat["id"], update_id,
                    _name(user) if user else "", chat_type=chat["type"], member_status=status)


def _inline(update_id: int, key: str, body) -> Incoming | None:
    """An inline query or a chosen inline result. Its lane is its sender (bots/inbox.py); the text
    is kept as sent here and normalised by the engine, lone surrogates dropped."""
    if not isinstance(body, dict):
        return _skipped(update_id, f"an {key} that is not an object")
    user = _sender(body)
    if user is None:
        return _skipped(update_id, f"an {key} without a sender")
    query = body.get("query")
    text = without_surrogates(query) if isinstance(query, str) else ""
    common = dict(user_id=user["id"], chat_id=user["id"], update_id=update_id, display_name="",
                  language_code=_language_code(user), text=text)
    if key == "inline_query":
        query_id, offset = body.get("id"), body.get("offset")
        if not isinstance(query_id, str) or not query_id:
            return _skipped(update_id, "an inline query without an id")
        return Incoming(IncomingKind.INLINE_QUERY, **common, inline_query_id=query_id,
                        offset=offset if isinstance(offset, str) else "")
    result = body.get("result_id")
    return Incoming(IncomingKind.CHOSEN_INLINE, **common, result_id=result if isinstance(result, str) else "")


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
