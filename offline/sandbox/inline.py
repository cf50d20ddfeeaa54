"""The sandbox's inline mode (a part of `Sandbox`): people typing `@bot so tired` in a chat, the
bot's answerInlineQuery checked as Telegram checks it, and a result chosen.

- `POST /sim/inline {token, user_id, query, offset}` sends an inline query and returns what the bot
  answered: {inline_query_id, update_id, results, next_offset, cache_time, is_personal}, or an error
  when no answer came in time.
- `POST /sim/choose {token, user_id, result_id, query, send}` delivers a chosen_inline_result (as
  Telegram does with inline feedback on, for every choice: the sampling of /setinlinefeedback is
  not simulated). With `send` the result also appears in the person's chat with the bot as their
  message, "via @bot", and reaches the bot as that message (the play page does this).

answerInlineQuery: the query must be one of this bot's, answered once, within INLINE_ANSWER_SECONDS;
at most 50 results, each an object with a type, an id of 1-64 bytes unique in the answer and, for
the cached stickers the bots send, a sticker_file_id that this sandbox gave out; next_offset at most
64 bytes; cache_time a non-negative integer.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field

INLINE_ANSWER_SECONDS = 10.0  # Telegram refuses an answer to an older query
MAX_RESULTS = 50
RESULT_TYPES = {"sticker": "sticker_file_id"}  # the result types the sandbox knows, with their file field


@dataclass
class PendingQuery:
    token: str
    user: dict
    query: str
    offset: str
    asked_at: float = field(default_factory=time.monotonic)
    answer: dict | None = None
    answered: asyncio.Event = field(default_factory=asyncio.Event)


class InlineMode:
    """Mixed into `Sandbox`: uses its bots, files, `user_message`, `_update` and `publish`. A refusal
    is a ValueError, which the sandbox answers as Telegram does: 400 "Bad Request: <reason>"."""

    _inline_ids = itertools.count(1)

    def _inline_queries(self) -> dict[str, PendingQuery]:
        if not hasattr(self, "_pending_inline"):
            self._pending_inline: dict[str, PendingQuery] = {}
            self._inline_shown: dict[tuple[str, int], dict[str, str]] = {}  # (bot, user) -> result id -> file id
        return self._pending_inline

    # ------------------------------------------------------------------ Bot API
    async def m_answerInlineQuery(self, bot, params):
        pending = self._inline_queries().get(str(params.get("inline_query_id") or ""))
        if pending is None or pending.token != bot.token or pending.answer is not None \
                or time.monotonic() - pending.asked_at > INLINE_ANSWER_SECONDS:
            raise ValueError("query is too old and response timeout expired or query ID is invalid")
        results = params.get("results")
        try:
            results = json.loads(results) if isinstance(results, str) else results
        except ValueError:
            raise ValueError("can't parse inline query results JSON object") from None
        if not isinstance(results, list):
            raise ValueError("can't parse inline query results JSON object")
        if len(results) > MAX_RESULTS:
            raise ValueError("RESULTS_TOO_MUCH")
        seen: set[str] = set()
        for result in results:
            kind = result.get("type") if isinstance(result, dict) else None
            if kind not in RESULT_TYPES:
                raise ValueError("RESULT_TYPE_INVALID")
            result_id = result.get("id")
            if not isinstance(result_id, str) or not 1 <= len(result_id.encode()) <= 64:
                raise ValueError("RESULT_ID_INVALID")
            if result_id in seen:
                raise ValueError("RESULT_ID_DUPLICATE")
            seen.add(result_id)
            if result.get(RESULT_TYPES[kind]) not in self.files:
                raise ValueError("wrong file identifier/HTTP URL specified")
        next_offset = str(params.get("next_offset") or "")
        if len(next_offset.encode()) > 64:
            raise ValueError("NEXT_OFFSET_INVALID")
        cache_time = params.get("cache_time", 300)
        if isinstance(cache_time, str) and cache_time.isdigit():
            cache_time = int(cache_time)
        if type(cache_time) is not int or cache_time < 0:
            raise ValueError("cache_time is invalid")
        personal = params.get("is_personal", False)
        personal = personal if isinstance(personal, bool) else str(personal).lower() == "true"
        pending.answer = {"results": results, "next_offset": next_offset, "cache_time": cache_time,
                          "is_personal": personal}
        shown = self._inline_shown.setdefault((bot.token, pending.user["id"]), {})
        shown.update({r["id"]: r[RESULT_TYPES[r["type"]]] for r in results})
        pending.answered.set()
        return True

    # ------------------------------------------------------------------ simulation
    def _person(self, body) -> dict:
        return {"id": int(body["user_id"]), "is_bot": False, "first_name": body.get("first_name", "Player"),
                "language_code": body.get("language_code", "en")}

    async def sim_inline(self, body):
        bot = self.bots[body["token"]]
        queries = self._inline_queries()
        user = self._person(body)
        query_id = str(next(self._inline_ids))
        text, offset = str(body.get("query") or ""), str(body.get("offset") or "")
        pending = queries[query_id] = PendingQuery(bot.token, user, text, offset)
        update = self._update(bot, {"inline_query": {"id": query_id, "from": user, "query": text, "offset": offset,
                                                     "chat_type": body.get("chat_type", "sender")}})
        await self.publish(bot, update)
        try:
            await asyncio.wait_for(pending.answered.wait(), float(body.get("timeout") or INLINE_ANSWER_SECONDS))
        except TimeoutError:
            raise ValueError("the bot did not answer the inline query in time") from None
        finally:
            if len(queries) > 1000:  # old queries can no longer be answered: forget them
                for old in [k for k, q in queries.items() if q.answered.is_set()][:500]:
                    del queries[old]
        return {"inline_query_id": query_id, "update_id": update["update_id"], **pending.answer}

    async def sim_choose(self, body):
        bot = self.bots[body["token"]]
        self._inline_queries()
        user = self._person(body)
        result_id = str(body["result_id"])
        file_id = self._inline_shown.get((bot.token, user["id"]), {}).get(result_id)
        if file_id is None:
            raise ValueError("no such result was shown to this person")
        chosen = {"result_id": result_id, "from": user, "query": str(body.get("query") or "")}
        update = self._update(bot, {"chosen_inline_result": chosen})
        await self.publish(bot, update)
        result = {"update_id": update["update_id"]}
        if body.get("send"):
            result.update(await self._send_via(bot, user, file_id))
        return result

    async def _send_via(self, bot, user: dict, file_id: str) -> dict:
        """The chosen sticker sent by the person into their chat with the bot, marked via the bot."""
        data, filename = self.files[file_id]
        _, chat, message = self.user_message(bot.token, user["id"], kind="sticker", first_name=user["first_name"],
                                             language_code=user["language_code"])
        via = {"sticker": {"file_id": file_id, "file_unique_id": f"u{file_id}", "type": "regular", "width": 512,
                           "height": 512, "is_animated": False, "is_video": filename.endswith(".webm"),
                           "file_size": len(data)},
               "via_bot": {"id": bot.id, "is_bot": True, "first_name": bot.username, "username": bot.username}}
        message.update(via)
        chat.transcript[-1].update(via)  # nothing was awaited since it was added: no stream has read it yet
        update = self._update(bot, {"message": message})
        await self.publish(bot, update)
        return {"message_id": message["message_id"], "message_update_id": update["update_id"]}
