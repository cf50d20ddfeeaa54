"""A local Telegram Bot API for tests, the demo and benchmarks.

It speaks the Bot API over HTTP for the methods the bots use, validates like Telegram (text and
caption length, callback_data 1–64 bytes, unknown chats and messages, malformed markup), limits
like Telegram (429 with retry_after past about 1 message/s per chat — a bucket of 3 that drains
one a second — or 30/s overall), and offers a simulation API under /sim to inject what players
do, read each chat's transcript, and inject faults (5xx, 429, delays, dropped connections).
Inline mode (answerInlineQuery, /sim/inline, /sim/choose) is in inline.py.
For a chat client (`sticktionary play`) it also streams each chat's changes as server-sent events
(/sim/stream), lists its bots with their commands (/sim/bots) and serves the files bots sent (/sim/file).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import mimetypes
import random
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import ClientError, ClientSession, TCPConnector, web

from offline.sandbox.groups import GroupChats
from offline.sandbox.inline import InlineMode

# Sticker file types a system's MIME table may not know.
STICKER_TYPES = {"webp": "image/webp", "webm": "video/webm", "tgs": "application/x-tgsticker"}
SEND_METHODS = {"sendMessage", "sendSticker", "sendPhoto", "sendAnimation", "sendDocument"}
TEXT_LIMIT, CAPTION_LIMIT = 4096, 1024  # in UTF-16 code units, as Telegram counts
BUTTONS_PER_ROW, BUTTONS_PER_KEYBOARD = 8, 100


def _units(text: str) -> int:
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _checked(text: Any, limit: int, what: str, *, empty_ok: bool = False) -> str:
    """Telegram's checks on a text or caption: a string, valid Unicode, not blank, within `limit`."""
    text = "" if text is None else str(text)
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        raise ApiError(400, "Bad Request: strings must be encoded in UTF-8")
    if not empty_ok and not text.strip():
        raise ApiError(400, f"Bad Request: {what} is empty")
    if _units(text) > limit:
        raise ApiError(400, f"Bad Request: {what} is too long")
    return text


def _entities(entities: Any, text: str) -> list[dict]:
    """Telegram's checks on message entities: a list of objects with a type, an offset and a length
    (UTF-16 units) inside the text; a text_link needs a url."""
    if entities is None:
        return []
    if isinstance(entities, str):
        try:
            entities = json.loads(entities)
        except ValueError:
            raise ApiError(400, "Bad Request: can't parse entities JSON object") from None
    if not isinstance(entities, list):
        raise ApiError(400, "Bad Request: can't parse entities")
    size = _units(text)
    for entity in entities:
        if not isinstance(entity, dict) or not isinstance(entity.get("type"), str):
            raise ApiError(400, "Bad Request: can't parse entities")
        offset, length = entity.get("offset"), entity.get("length")
        if type(offset) is not int or type(length) is not int or offset < 0 or length <= 0 or offset + length > size:
            raise ApiError(400, "Bad Request: can't parse entities: entity is out of the text")
        if entity["type"] == "text_link" and not isinstance(entity.get("url"), str):
            raise ApiError(400, "Bad Request: can't parse entities: text_link without url")
    return entities


class ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: int | None = None,
                 migrate_to_chat_id: int | None = None):
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after
        self.migrate_to_chat_id = migrate_to_chat_id


@dataclass
class Bucket:
    """A leaky bucket: `capacity` sends at once, refilled at `rate` per second."""

    capacity: float
    rate: float
    level: float = 0.0
    stamp: float = field(default_factory=time.monotonic)

    def take(self) -> float:
        """0 when allowed (and counted), else seconds to wait."""
        now = time.monotonic()
        self.level = max(0.0, self.level - (now - self.stamp) * self.rate)
        self.stamp = now
        if self.level + 1 > self.capacity:
            return (self.level + 1 - self.capacity) / self.rate
        self.level += 1
        return 0.0


@dataclass
class BotState:
    token: str
    id: int
    username: str
    updates: deque = field(default_factory=deque)
    next_update_id: int = 1
    webhook: str | None = None
    secret: str | None = None
    commands: dict = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    # What the bot was given (getUpdates results, webhook deliveries answered 2xx) and what it
    # confirmed (getUpdates offsets past them): chaos tests check every one was handled.
    handed_out: set = field(default_factory=set)
    confirmed_below: int = 0
    revoked: bool = False  # the token was revoked: every call answers 401


@dataclass
class Chat:
    id: int
    user: dict
    messages: dict = field(default_factory=dict)  # message_id -> message dict (latest version)
    transcript: list = field(default_factory=list)  # everything, in order, as the player saw it
    next_message_id: int = 1
    blocked: bool = False
    type: str = "private"  # or "group", "supergroup"
    title: str = ""
    migrated_to: int | None = None  # a group upgraded to a supergroup with this id
    bucket: Bucket = field(default_factory=lambda: Bucket(3, 1))
    bot_sent: asyncio.Event = field(default_factory=asyncio.Event)
    deleted: list = field(default_factory=list)  # message ids the bot deleted, in order


class Sandbox(GroupChats, InlineMode):
    def __init__(self, *, rate_limits: bool = True, seed: int = 0, webhook_spread: list[str] | None = None,
                 webhook_connections: str = "reuse"):
        """`webhook_spread`: base URLs (scheme://host:port) that webhook deliveries go to in turn,
        keeping the path the bot set, as a load balancer in front of several workers would.
        `webhook_connections` "new": every delivery on a connection of its own, as Telegram's
        many servers do, so that workers sharing one port (SO_REUSEPORT) each get some."""
        self.webhook_spread = list(webhook_spread or [])
        self.webhook_connections = webhook_connections
        self._spread_turn = itertools.count()
        self.bots: dict[str, BotState] = {}
        self.chats: dict[tuple[str, int], Chat] = {}
        self.files: dict[str, tuple[bytes, str]] = {}
        self.presses: dict[str, dict] = {}  # callback query id -> the press in its chat's transcript
        self.rate_limits = rate_limits
        self.overall: dict[str, Bucket] = defaultdict(lambda: Bucket(30, 30))
        self.faults: dict[str, float] = {"error_5xx": 0.0, "error_429": 0.0, "delay_ms": 0.0, "drop": 0.0,
                                         "retry_after": 1.0}
        self.rng = random.Random(seed)
        self.stats: dict[str, int] = defaultdict(int)
        self._ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self.app = web.Application(client_max_size=50 * 2**20)
        self.app.router.add_route("*", "/bot{token}/{method}", self._api)
        self.app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._add_watch_routes()
        self.app.router.add_post("/sim/{action}", self._sim)
        self.app.router.add_get("/sim/{action}", self._sim)
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self._http: ClientSession | None = None
        self._changes = asyncio.Event()  # set, and replaced, whenever any chat changes
        self._closing = False

    # ------------------------------------------------------------------ lifecycle
    def add_bot(self, token: str, username: str) -> BotState:
        bot = BotState(token, 7_000_000 + len(self.bots), username)
        self.bots[token] = bot
        return bot

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        port = self._runner.addresses[0][1]  # the port the system chose when asked for 0
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    async def stop(self) -> None:
        self._closing = True
        self._touch()  # open streams end now rather than hold the shutdown up
        if self._http:
            await self._http.close()
        if self._runner:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ Bot API
    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            body = await request.read()
            if body:
                params.update(json.loads(body))
        elif request.method == "POST":
            form = await request.post()
            for key, value in form.items():
                if hasattr(value, "file"):
                    params[key] = ("upload", value.file.read(), value.filename)
                else:
                    params[key] = value
        # Uploads in multipart may be referenced as attach://name.
        for key, value in list(params.items()):
            if isinstance(value, str) and value.startswith("attach://") and value[9:] in params:
                params[key] = params[value[9:]]
        return params

    async def _api(self, request: web.Request) -> web.StreamResponse:
        bot = self.bots.get(request.match_info["token"])
        method = request.match_info["method"]
        if bot is None or bot.revoked:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        try:
            params = await self._params(request)
            if method in SEND_METHODS or method.startswith("edit"):
                self.stats[f"tries:{params.get('chat_id')}"] += 1  # every call, faulted or not
                if await self._faults(method):
                    request.transport.close()  # a dropped connection: no response at all
                    return web.Response(status=499)
            handler = getattr(self, f"m_{method}", None)
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            result = await handler(bot, params)
            self.stats[f"ok:{method}"] += 1
            return web.json_response({"ok": True, "result": result})
        except ApiError as error:
            body = {"ok": False, "error_code": error.code, "description": error.description}
            if error.retry_after is not None:
                body["parameters"] = {"retry_after": error.retry_after}
            if error.migrate_to_chat_id is not None:
                body["parameters"] = {"migrate_to_chat_id": error.migrate_to_chat_id}
            if "message is not modified" in error.description:
                # Telegram's answer to an edit that changes nothing; bots take it as done: counted apart
                self.stats[f"not_modified:{method}"] += 1
            else:
                self.stats[f"error:{error.code}"] += 1
                self.stats[f"error:{error.code}:{method}"] += 1
            return web.json_response(body, status=error.code)
        except (ValueError, KeyError, TypeError) as error:
            self.stats["error:400"] += 1
            self.stats[f"error:400:{method}"] += 1
            return web.json_response({"ok": False, "error_code": 400, "description": f"Bad Request: {error}"},
                                     status=400)

    async def _faults(self, method: str) -> bool:
        """Injected trouble for a send or edit; True means: drop the connection."""
        faults = self.faults
        if faults["delay_ms"]:
            await asyncio.sleep(faults["delay_ms"] / 1000)
        roll = self.rng.random()
        if roll < faults["drop"]:
            self.stats["fault:drop"] += 1
            return True
        roll -= faults["drop"]
        if roll < faults["error_5xx"]:
            self.stats["fault:5xx"] += 1
            raise ApiError(502, "Bad Gateway")
        roll -= faults["error_5xx"]
        if roll < faults["error_429"]:
            self.stats["fault:429"] += 1
            wait = max(1, int(faults["retry_after"]))
            raise ApiError(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
        return False

    def _chat(self, bot: BotState, chat_id: Any) -> Chat:
        try:
            key = (bot.token, int(chat_id))
        except (TypeError, ValueError):
            raise ApiError(400, "Bad Request: chat_id is invalid") from None
        chat = self.chats.get(key)
        if chat is None:
            raise ApiError(400, "Bad Request: chat not found")
        if chat.migrated_to is not None:
            raise ApiError(400, "Bad Request: group chat was upgraded to a supergroup chat",
                           migrate_to_chat_id=chat.migrated_to)
        if chat.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user" if chat.type == "private"
                           else "Forbidden: bot was kicked from the group chat")
        return chat

    def _limit(self, bot: BotState, chat: Chat) -> None:
        if not self.rate_limits:
            return
        wait = max(chat.bucket.take(), self.overall[bot.token].take())
        if wait:
            self.stats["rate_limited"] += 1
            seconds = max(1, int(wait + 0.999))
            raise ApiError(429, f"Too Many Requests: retry after {seconds}", retry_after=seconds)

    @staticmethod
    def _markup(raw: Any) -> dict | None:
        if raw in (None, ""):
            return None
        markup = json.loads(raw) if isinstance(raw, str) else raw
        rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
        if sum(len(row) for row in rows) > BUTTONS_PER_KEYBOARD:
            raise ApiError(400, "Bad Request: reply markup is too long")
        for row in rows:
            if len(row) > BUTTONS_PER_ROW:
                raise ApiError(400, "Bad Request: too many buttons in a row")
            for button in row:
                if not isinstance(button, dict) or not str(button.get("text") or "").strip():
                    raise ApiError(400, "Bad Request: inline keyboard button text is empty")
                _checked(button["text"], 4096, "button text")
                data = button.get("callback_data")
                try:
                    size = len(str(data).encode()) if data is not None else 1
                except UnicodeEncodeError:
                    size = 0
                if not 1 <= size <= 64:
                    raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return markup

    def _store_file(self, value: Any, kind: str) -> dict:
        if isinstance(value, tuple):
            _, data, filename = value
            file_id = f"{kind}-{next(self._ids)}"
            self.files[file_id] = (data, filename or kind)
        elif isinstance(value, str) and value in self.files:
            file_id = value
        else:
            raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        data, _ = self.files[file_id]
        return {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": len(data)}

    def _bot_message(self, bot: BotState, chat: Chat, params: dict, **content) -> dict:
        message = {"message_id": chat.next_message_id, "date": int(time.time()),
                   "chat": ({"id": chat.id, "type": "private", "first_name": chat.user.get("first_name", "")}
                            if chat.type == "private" else {"id": chat.id, "type": chat.type, "title": chat.title}),
                   "from": {"id": bot.id, "is_bot": True, "first_name": bot.username, "username": bot.username},
                   **content}
        markup = self._markup(params.get("reply_markup"))
        if markup:
            message["reply_markup"] = markup
        chat.next_message_id += 1
        chat.messages[message["message_id"]] = message
        chat.transcript.append({"by": "bot", "at": time.monotonic(), **message})
        chat.bot_sent.set()
        self._touch()
        return message

    async def wait_bot_message(self, token: str, user_id: int, after: int, timeout: float = 30) -> dict:
        """In-process: the first bot message in a chat's transcript at index >= `after`."""
        chat = self.chats[(token, user_id)]

        async def wait() -> dict:
            while True:
                for entry in chat.transcript[after:]:
                    if entry["by"] == "bot":
                        return entry
                chat.bot_sent.clear()
                await chat.bot_sent.wait()

        return await asyncio.wait_for(wait(), timeout)

    async def m_getMe(self, bot, params):
        return {"id": bot.id, "is_bot": True, "first_name": bot.username, "username": bot.username,
                "can_join_groups": False, "can_read_all_group_messages": False, "supports_inline_queries": True}

    async def m_getUpdates(self, bot, params):
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        while bot.updates and bot.updates[0]["update_id"] < offset:
            bot.updates.popleft()
        bot.confirmed_below = max(bot.confirmed_below, offset)
        if not bot.updates and timeout:
            bot.arrived.clear()
            try:
                await asyncio.wait_for(bot.arrived.wait(), timeout)
            except TimeoutError:
                pass
        given = list(itertools.islice(bot.updates, 0, limit))
        bot.handed_out.update(u["update_id"] for u in given)
        return given

    async def m_setWebhook(self, bot, params):
        bot.webhook = params.get("url") or None
        bot.secret = params.get("secret_token") or None
        return True

    async def m_deleteWebhook(self, bot, params):
        bot.webhook = bot.secret = None
        if str(params.get("drop_pending_updates", "")).lower() == "true":
            bot.updates.clear()
        return True

    async def m_getWebhookInfo(self, bot, params):
        return {"url": bot.webhook or "", "has_custom_certificate": False, "pending_update_count": len(bot.updates)}

    async def m_setMyCommands(self, bot, params):
        commands = params.get("commands")
        commands = json.loads(commands) if isinstance(commands, str) else commands
        if not isinstance(commands, list) or not all(isinstance(c, dict) and c.get("command") for c in commands):
            raise ApiError(400, "Bad Request: commands are invalid")
        bot.commands[params.get("language_code") or ""] = commands
        return True

    async def m_sendMessage(self, bot, params):
        chat = self._chat(bot, params.get("chat_id"))
        text = _checked(params.get("text"), TEXT_LIMIT, "message text")
        self._markup(params.get("reply_markup"))
        entities = _entities(params.get("entities"), text)
        self._limit(bot, chat)
        return self._bot_message(bot, chat, params, text=text, **({"entities": entities} if entities else {}))

    async def _send_media(self, bot, params, field_name: str, build) -> dict:
        chat = self._chat(bot, params.get("chat_id"))
        caption = _checked(params.get("caption"), CAPTION_LIMIT, "message caption", empty_ok=True) or None
        self._markup(params.get("reply_markup"))
        if field_name not in params:
            raise ApiError(400, f"Bad Request: there is no {field_name} in the request")
        self._limit(bot, chat)
        stored = self._store_file(params[field_name], field_name)
        content = {field_name: build(stored)}
        if caption:
            content["caption"] = caption
        return self._bot_message(bot, chat, params, **content)

    async def m_sendSticker(self, bot, params):
        return await self._send_media(bot, params, "sticker", lambda f: {
            **f, "type": "regular", "width": 512, "height": 512, "is_animated": False,
            "is_video": self.files[f["file_id"]][1].endswith(".webm")})

    async def m_sendPhoto(self, bot, params):
        return await self._send_media(bot, params, "photo", lambda f: [{**f, "width": 480, "height": 480}])

    async def m_sendAnimation(self, bot, params):
        return await self._send_media(bot, params, "animation", lambda f: {
            **f, "width": 256, "height": 256, "duration": 1})

    async def m_sendDocument(self, bot, params):
        return await self._send_media(bot, params, "document", lambda f: f)

    def _existing(self, bot, params) -> tuple[Chat, dict]:
        chat = self._chat(bot, params.get("chat_id"))
        message = chat.messages.get(int(params.get("message_id") or 0))
        if message is None or message["from"]["id"] != bot.id:
            raise ApiError(400, "Bad Request: message to edit not found")
        return chat, message

    def _edited(self, chat: Chat, message: dict, params: dict, **changes) -> dict:
        markup = self._markup(params.get("reply_markup"))
        updated = {**message, **changes, "edit_date": int(time.time())}
        if markup:
            updated["reply_markup"] = markup
        else:
            updated.pop("reply_markup", None)
        unchanged = {k: v for k, v in updated.items() if k != "edit_date"} == \
            {k: v for k, v in message.items() if k != "edit_date"}
        if unchanged:  # as Telegram answers an edit that changes nothing
            raise ApiError(400, "Bad Request: message is not modified: specified new message content and reply "
                                "markup are exactly the same as a current content and reply markup of the message")
        chat.messages[message["message_id"]] = updated
        chat.transcript.append({"by": "bot", "edit": True, "at": time.monotonic(), **updated})
        self._touch()
        return updated

    async def m_editMessageText(self, bot, params):
        chat, message = self._existing(bot, params)
        if "text" not in message:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        text = _checked(params.get("text"), TEXT_LIMIT, "message text")
        entities = _entities(params.get("entities"), text)
        if not entities:
            message = {k: v for k, v in message.items() if k != "entities"}  # the new text has none
        return self._edited(chat, message, params, text=text, **({"entities": entities} if entities else {}))

    async def m_editMessageCaption(self, bot, params):
        chat, message = self._existing(bot, params)
        if "text" in message:
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        caption = _checked(params.get("caption"), CAPTION_LIMIT, "message caption", empty_ok=True)
        return self._edited(chat, message, params, caption=caption)

    async def m_editMessageReplyMarkup(self, bot, params):
        chat, message = self._existing(bot, params)
        return self._edited(chat, message, params)

    async def m_editMessageMedia(self, bot, params):
        chat, message = self._existing(bot, params)
        media = params.get("media")
        media = json.loads(media) if isinstance(media, str) else media
        if not isinstance(media, dict) or "type" not in media:
            raise ApiError(400, "Bad Request: media is invalid")
        if "text" in message:
            raise ApiError(400, "Bad Request: there is no media in the message to edit")
        reference = media.get("media", "")
        if not isinstance(reference, str) or not reference:
            raise ApiError(400, "Bad Request: media is invalid")
        # A new file comes as a part of the multipart request named by "attach://<name>".
        upload = params.get(reference[9:]) if reference.startswith("attach://") else reference
        if upload is None:
            raise ApiError(400, "Bad Request: can't find the attached file")
        stored = self._store_file(upload, media["type"])
        caption = _checked(media.get("caption"), CAPTION_LIMIT, "message caption", empty_ok=True) or None
        content = {media["type"]: [{**stored, "width": 480, "height": 480}] if media["type"] == "photo" else stored}
        for kind in ("photo", "sticker", "animation", "document", "video"):
            if kind != media["type"]:
                message = {k: v for k, v in message.items() if k != kind}
        message = {k: v for k, v in message.items() if k != "caption"}
        return self._edited(chat, message, params, **content, **({"caption": caption} if caption else {}))

    async def m_deleteMessage(self, bot, params):
        chat, message = self._existing(bot, params)
        del chat.messages[message["message_id"]]
        chat.deleted.append(message["message_id"])
        self._touch()
        return True

    async def m_answerCallbackQuery(self, bot, params):
        callback = str(params.get("callback_query_id") or "")
        if not callback:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        entry = self.presses.get(callback)
        if entry is None:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        if "answer" in entry:
            self.stats["press_answered_again"] += 1  # a press answered twice: its update was handled twice
        entry["answer"] = _checked(params.get("text"), 200, "callback answer text", empty_ok=True)
        entry["alert"] = str(params.get("show_alert", "")).lower() == "true"
        if params.get("url"):
            entry["url"] = str(params["url"])  # a deep link the presser's client opens
        self._touch()
        return True

    async def m_getFile(self, bot, params):
        file_id = params.get("file_id")
        if file_id not in self.files:
            raise ApiError(400, "Bad Request: invalid file_id")
        data, filename = self.files[file_id]
        return {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": len(data),
                "file_path": f"files/{file_id}/{filename}"}

    async def _file(self, request: web.Request) -> web.Response:
        parts = request.match_info["path"].split("/")
        if len(parts) < 2 or parts[1] not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[parts[1]][0])

    # ------------------------------------------------------------------ simulation API
    def _update(self, bot: BotState, payload: dict) -> dict:
        update = {"update_id": bot.next_update_id, **payload}
        bot.next_update_id += 1
        return update

    async def publish(self, bot: BotState, update: dict) -> None:
        if bot.webhook:
            if self._http is None:
                fresh = self.webhook_connections == "new"
                self._http = ClientSession(connector=TCPConnector(force_close=True) if fresh else None)
            headers = {"X-Telegram-Bot-Api-Secret-Token": bot.secret} if bot.secret else {}
            for attempt in range(8):  # Telegram retries failed webhook deliveries
                try:
                    async with self._http.post(self._webhook_target(bot.webhook), json=update,
                                               headers=headers) as response:
                        if response.status < 300:
                            bot.handed_out.add(update["update_id"])
                        if response.status < 500:
                            return
                except (OSError, ClientError):  # refused, or a worker killed mid-request: Telegram retries
                    pass
                await asyncio.sleep(0.05 * (attempt + 1))
            self.stats["webhook_undelivered"] += 1
        else:
            bot.updates.append(update)
            bot.arrived.set()

    def _webhook_target(self, url: str) -> str:
        if not self.webhook_spread:
            return url
        parts = urlsplit(url)
        base = urlsplit(self.webhook_spread[next(self._spread_turn) % len(self.webhook_spread)])
        return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))

    def user_message(self, token: str, user_id: int, *, text: str | None = None, kind: str = "text",
                     first_name: str = "Player", language_code: str = "en") -> tuple[BotState, Chat, dict]:
        bot = self.bots[token]
        key = (token, user_id)
        user = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": language_code}
        chat = self.chats.get(key)
        if chat is None:
            chat = self.chats[key] = Chat(user_id, user)
        chat.blocked = False
        message = {"message_id": chat.next_message_id, "date": int(time.time()), "from": user,
                   "chat": {"id": user_id, "type": "private", "first_name": first_name}}
        chat.next_message_id += 1
        if kind == "text":
            message["text"] = text or ""
            if message["text"].startswith("/"):
                command = message["text"].split()[0]
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        elif kind == "photo":
            message["photo"] = [{"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1}]
        elif kind == "voice":
            message["voice"] = {"file_id": "v", "file_unique_id": "v", "duration": 1}
        elif kind == "location":
            message["location"] = {"latitude": 1.0, "longitude": 2.0}
        elif kind == "sticker":
            message["sticker"] = {"file_id": "s", "file_unique_id": "s", "type": "regular", "width": 512,
                                  "height": 512, "is_animated": False, "is_video": False}
        chat.messages[message["message_id"]] = message
        chat.transcript.append({"by": "user", "at": time.monotonic(), **message})
        self._touch()
        return bot, chat, message

    async def _sim(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        body = await request.json() if request.method == "POST" and request.can_read_body else dict(request.query)
        try:
            result = await getattr(self, f"sim_{action}")(body)
        except (KeyError, ValueError, ApiError) as error:
            return web.json_response({"ok": False, "error": str(error)}, status=400)
        return web.json_response({"ok": True, "result": result})

    async def sim_message(self, body):
        if body.get("chat_id") is not None:
            return await self._group_message(body)
        bot, chat, message = self.user_message(body["token"], int(body["user_id"]), text=body.get("text"),
                                               kind=body.get("kind", "text"), first_name=body.get("first_name", "Player"),
                                               language_code=body.get("language_code", "en"))
        update = self._update(bot, {"message": message})
        await self.publish(bot, update)
        return {"update_id": update["update_id"], "message_id": message["message_id"], "at": time.monotonic()}

    async def sim_edit(self, body):
        bot = self.bots[body["token"]]
        chat = self.chats[(body["token"], int(body["user_id"]))]
        message = dict(chat.messages[int(body["message_id"])], text=body.get("text", ""), edit_date=int(time.time()))
        update = self._update(bot, {"edited_message": message})
        await self.publish(bot, update)
        return {"update_id": update["update_id"]}

    async def sim_press(self, body):
        bot = self.bots[body["token"]]
        in_group = body.get("chat_id") is not None
        chat = self.chats[(body["token"], int(body["chat_id"] if in_group else body["user_id"]))]
        message = chat.messages.get(int(body["message_id"]))
        if message is None:
            raise ValueError("no such message")
        callback_id = str(next(self._callback_ids))
        user = self._member(chat, body) if in_group else chat.user
        query = {"id": callback_id, "from": user, "chat_instance": str(chat.id), "message": message,
                 "data": body["data"]}
        press = {"by": "user", "press": body["data"], "callback_id": callback_id,
                 "message_id": message["message_id"], "at": time.monotonic()}
        if in_group:
            press["user_id"] = user["id"]
        chat.transcript.append(press)
        self.presses[callback_id] = press
        self._touch()
        update = self._update(bot, {"callback_query": query})
        await self.publish(bot, update)
        return {"update_id": update["update_id"], "callback_id": callback_id, "at": time.monotonic()}

    async def sim_redeliver(self, body):
        """The same update again, as after a webhook retry or a restart."""
        bot = self.bots[body["token"]]
        update = body["update"]
        await self.publish(bot, update)
        return True

    async def sim_transcript(self, body):
        """A chat's transcript, from entry `since` on (a player keeps what it has read); `chat_id`:
        a group's, every member's presses with their answers in it."""
        chat = self.chats.get((body["token"], int(body["chat_id"] if body.get("chat_id") is not None
                                                  else body["user_id"])))
        return chat.transcript[int(body.get("since") or 0):] if chat else []

    async def sim_wait(self, body):
        """Long poll: the first bot message in a chat at transcript index >= `after`."""
        key = (body["token"], int(body["user_id"]))
        deadline = time.monotonic() + float(body.get("timeout") or 30)
        while key not in self.chats:  # the player's first message may still be on its way
            if time.monotonic() > deadline:
                raise ValueError("no such chat")
            await asyncio.sleep(0.005)
        return await self.wait_bot_message(body["token"], int(body["user_id"]), int(body.get("after") or 0),
                                           max(0.0, deadline - time.monotonic()))

    async def sim_faults(self, body):
        for key, value in body.items():
            if key not in self.faults:
                raise KeyError(key)
            self.faults[key] = float(value)
        return self.faults

    async def sim_limits(self, body):
        self.rate_limits = bool(body.get("on", True))
        return self.rate_limits

    async def sim_block(self, body):
        self.chats[(body["token"], int(body["user_id"]))].blocked = bool(body.get("blocked", True))
        return True

    async def sim_group(self, body):
        """A group the bot was added to (`chat_id` negative, as Telegram's are). `added_by` (a user
        id): the bot is told, as Telegram tells it (my_chat_member); `status` "left" or "kicked"
        removes it again the same way."""
        chat_id = int(body["chat_id"])
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        bot = self.bots[body["token"]]
        chat = self.chats.get((body["token"], chat_id))
        if chat is None:
            chat = self.chats[(body["token"], chat_id)] = Chat(chat_id, {}, type=body.get("type", "group"),
                                                               title=body.get("title", "Group"))
        status = body.get("status", "member")
        chat.blocked = status in ("left", "kicked")
        if body.get("added_by") is not None:
            return await self._tell_membership(bot, chat, body, status)
        return True

    async def sim_migrate(self, body):
        """The group becomes a supergroup with a new id: sends to the old id now fail with
        migrate_to_chat_id, as Telegram's do."""
        token, old, new = body["token"], int(body["chat_id"]), int(body["new_chat_id"])
        chat = self.chats[(token, old)]
        chat.migrated_to = new
        self.chats[(token, new)] = Chat(new, chat.user, type="supergroup", title=chat.title)
        if body.get("tell"):  # the service message Telegram sends in the old group
            return await self._tell_migration(self.bots[token], chat, new)
        return True

    async def sim_revoke(self, body):
        """The bot's token is revoked (or restored): every Bot API call answers 401 Unauthorized."""
        self.bots[body["token"]].revoked = bool(body.get("revoked", True))
        return True

    async def sim_stats(self, body):
        return dict(self.stats)

    async def sim_updates(self, body):
        """The update ids a bot was given, and below which it confirmed them (getUpdates offset)."""
        bot = self.bots[body["token"]]
        return {"handed_out": sorted(bot.handed_out), "confirmed_below": bot.confirmed_below,
                "last_update_id": bot.next_update_id - 1}

    # ------------------------------------------------------------------ watching chats (the play page)
    # What a chat client needs beyond the /sim actions above: the bots and their commands, the files
    # the bots sent, and a stream of each chat's changes (server-sent events) so a page need not poll.
    def _add_watch_routes(self) -> None:
        # Before /sim/{action}, which would otherwise take /sim/stream as an action.
        self.app.router.add_get("/sim/stream", self._stream)
        self.app.router.add_get("/sim/file/{file_id}", self._sim_file)

    def release_long_polls(self) -> None:
        """Answer every getUpdates that is waiting, at once, with what there is: bots being stopped
        need not sit out their poll timeout (10 s) before they notice."""
        for bot in self.bots.values():
            bot.arrived.set()

    def _touch(self) -> None:
        """Wake every stream: something changed in some chat."""
        self._changes.set()
        self._changes = asyncio.Event()

    async def sim_bots(self, body):
        """The bots, with the commands each registered with setMyCommands (by language code)."""
        return [{"token": bot.token, "id": bot.id, "username": bot.username, "commands": bot.commands}
                for bot in self.bots.values()]

    async def _sim_file(self, request: web.Request) -> web.Response:
        """A file a bot sent, by file_id, with its media type (a browser plays WEBM only when told)."""
        stored = self.files.get(request.match_info["file_id"])
        if stored is None:
            return web.Response(status=404)
        data, filename = stored
        suffix = filename.rpartition(".")[2].lower()
        media_type = (STICKER_TYPES.get(suffix) or mimetypes.guess_type(filename)[0]
                      or "application/octet-stream")
        # A file_id always names the same bytes.
        return web.Response(body=data, content_type=media_type,
                            headers={"Cache-Control": "private, max-age=86400, immutable"})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events for one chat, from transcript entry `since` on:
        `entry` {index, entry} for each transcript entry (messages both ways, edits, presses),
        `answer` {callback_id, text, alert, url, user_id} when the bot answers a press already streamed
        (`user_id`: who pressed, in a group; `chat_id` instead of `user_id` follows a group),
        `delete` {message_id} when the bot deletes a message. A comment line every 15 s keeps it open."""
        token, query = request.query.get("token", ""), request.query
        if token not in self.bots:
            return web.json_response({"ok": False, "error": "unknown bot"}, status=400)
        try:
            chat_id = query.get("chat_id") or query.get("user_id", "")  # a group's, or a private chat's
            key, sent = (token, int(chat_id)), max(0, int(query.get("since") or 0))
        except ValueError:
            return web.json_response({"ok": False, "error": "chat_id, user_id and since are numbers"}, status=400)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        unanswered: dict[str, dict] = {}  # presses streamed before the bot answered them
        deleted = 0
        with contextlib.suppress(ConnectionError):
            while not self._closing:
                changed = self._changes  # taken before reading: a change while we write wakes us at once
                chat = self.chats.get(key)
                events = []
                if chat is not None:
                    for index in range(sent, len(chat.transcript)):
                        entry = chat.transcript[index]
                        events.append(("entry", {"index": index, "entry": entry}))
                        if "callback_id" in entry and "answer" not in entry:
                            unanswered[entry["callback_id"]] = entry
                    sent = max(sent, len(chat.transcript))
                    for callback_id, press in list(unanswered.items()):
                        if "answer" in press:
                            del unanswered[callback_id]
                            events.append(("answer", {"callback_id": callback_id, "text": press["answer"],
                                                      "alert": press.get("alert", False), "url": press.get("url"),
                                                      "user_id": press.get("user_id")}))
                    events += [("delete", {"message_id": m}) for m in chat.deleted[deleted:]]
                    deleted = len(chat.deleted)
                for name, data in events:
                    await response.write(f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode())
                try:
                    await asyncio.wait_for(changed.wait(), 15)
                except TimeoutError:
                    await response.write(b": still here\n\n")
        return response
