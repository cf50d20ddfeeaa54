"""The sandbox's group chats, as Telegram runs them for a bot in privacy mode: members (remembered by
id, named by what each action gives) post messages, of which the bot gets only commands; the bot is
told of its own membership (my_chat_member) and of the group becoming a supergroup
(migrate_to_chat_id). Mixed into `Sandbox` (server.py), whose chats, bots and publishing it uses."""

from __future__ import annotations

import time


class GroupChats:
    @staticmethod
    def _member(chat, body) -> dict:
        """A group member as a message's or a press's `from` (members are remembered by id)."""
        user_id = int(body["user_id"])
        members = chat.user.setdefault("members", {})
        member = members.get(user_id) or {"id": user_id, "is_bot": False, "first_name": "Player",
                                          "language_code": "en"}
        for key in ("first_name", "language_code"):
            if body.get(key):
                member[key] = body[key]
        members[user_id] = member
        return dict(member)

    async def _group_message(self, body) -> dict:
        """A member's message in a group (`chat_id`): with privacy mode on (`privacy`, the default)
        the bot gets it only when it is a command; everything is in the group's transcript either way."""
        bot = self.bots[body["token"]]
        chat = self.chats.get((body["token"], int(body["chat_id"])))
        if chat is None or chat.type == "private":
            raise ValueError("no such group: make it with /sim/group")
        user = self._member(chat, body)
        message = {"message_id": chat.next_message_id, "date": int(time.time()), "from": user,
                   "chat": {"id": chat.id, "type": chat.type, "title": chat.title}, "text": body.get("text") or ""}
        chat.next_message_id += 1
        text = message["text"]
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        chat.messages[message["message_id"]] = message
        chat.transcript.append({"by": "user", "at": time.monotonic(), **message})
        self._touch()
        if body.get("privacy", True) and not text.startswith("/") or chat.blocked:
            return {"update_id": None, "message_id": message["message_id"], "at": time.monotonic()}
        update = self._update(bot, {"message": message})
        await self.publish(bot, update)
        return {"update_id": update["update_id"], "message_id": message["message_id"], "at": time.monotonic()}

    async def _tell_membership(self, bot, chat, body, status: str) -> dict:
        """my_chat_member: the bot added to the group by `added_by` (or its status now `status`)."""
        user = self._member(chat, {"user_id": body["added_by"], "first_name": body.get("first_name")})
        me = {"id": bot.id, "is_bot": True, "first_name": bot.username, "username": bot.username}
        old = "left" if status not in ("left", "kicked") else "member"
        new = {"user": me, "status": status, **({"until_date": 0} if status == "kicked" else {})}
        update = self._update(bot, {"my_chat_member": {
            "chat": {"id": chat.id, "type": chat.type, "title": chat.title}, "from": user, "date": int(time.time()),
            "old_chat_member": {"user": me, "status": old}, "new_chat_member": new}})
        chat.transcript.append({"by": "system", "member_status": status, "user_id": user["id"], "at": time.monotonic()})
        await self.publish(bot, update)
        return {"update_id": update["update_id"]}

    async def _tell_migration(self, bot, chat, new_chat_id: int) -> dict:
        """The service message Telegram sends in a group that became a supergroup."""
        message = {"message_id": chat.next_message_id, "date": int(time.time()),
                   "chat": {"id": chat.id, "type": chat.type, "title": chat.title}, "migrate_to_chat_id": new_chat_id}
        chat.next_message_id += 1
        update = self._update(bot, {"message": message})
        await self.publish(bot, update)
        return {"update_id": update["update_id"]}
