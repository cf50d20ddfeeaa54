"""What of a group's updates is kept: nothing of the group's conversation. An update from a group is
stored (bots/inbox.py) only when it can be a move in the game (a command, a button press, the bot's
own membership, the migration to a supergroup), and then cut to the fields the game reads: no
message it replies to, no other member's text, no title. With privacy mode on (the default,
README "Groups") Telegram sends little else; with it off, the rest is dropped here unread."""

from __future__ import annotations

from bots.messages.incoming import GROUP_CHATS

_USER_FIELDS = ("id", "is_bot", "first_name", "language_code")
_BOT_MESSAGE_FIELDS = ("message_id", "date", "from", "photo", "reply_markup")


def _chat(chat: dict) -> dict:
    return {"id": chat.get("id"), "type": chat.get("type")}


def _user(user) -> dict | None:
    return {k: user[k] for k in _USER_FIELDS if k in user} if isinstance(user, dict) else None


def _in_group(holder) -> bool:
    chat = holder.get("chat") if isinstance(holder, dict) else None
    return isinstance(chat, dict) and chat.get("type") in GROUP_CHATS


def group_safe(update: dict) -> dict | None:
    """`update` as it may be stored: unchanged when it is not from a group, cut down when it is a
    group's move, None when it is a group's conversation (not to be stored at all)."""
    if not isinstance(update, dict):
        return update
    base = {"update_id": update.get("update_id")}
    for key in ("message", "edited_message"):
        message = update.get(key)
        if not _in_group(message):
            continue
        if key != "message":
            return None
        kept = {"message_id": message.get("message_id"), "date": message.get("date"),
                "chat": _chat(message["chat"])}
        if "from" in message:
            kept["from"] = _user(message["from"])
        text = message.get("text")
        if isinstance(text, str) and text.startswith("/"):
            kept["text"] = text
            if isinstance(message.get("entities"), list):
                kept["entities"] = [e for e in message["entities"] if isinstance(e, dict)
                                    and e.get("type") == "bot_command"]
        elif isinstance(message.get("migrate_to_chat_id"), int):
            kept["migrate_to_chat_id"] = message["migrate_to_chat_id"]
        else:
            return None
        return {**base, "message": kept}
    press = update.get("callback_query")
    if isinstance(press, dict) and _in_group(press.get("message")):
        message = press["message"]
        kept = {k: message[k] for k in _BOT_MESSAGE_FIELDS if k in message}
        kept["chat"] = _chat(message["chat"])
        return {**base, "callback_query": {k: press[k] for k in ("id", "chat_instance", "data") if k in press}
                | {"from": _user(press.get("from")), "message": kept}}
    change = update.get("my_chat_member")
    if _in_group(change):
        return {**base, "my_chat_member": {
            "chat": _chat(change["chat"]), "from": _user(change.get("from")), "date": change.get("date"),
            "old_chat_member": change.get("old_chat_member"), "new_chat_member": change.get("new_chat_member")}}
    if any(key in update for key in ("chat_member", "message_reaction", "message_reaction_count", "channel_post",
                                     "edited_channel_post")):
        return None  # members' comings and goings, reactions, a channel's posts: theirs, not the game's
    return update
