"""Delivery of inline answers (`AnswerInline`): one answerInlineQuery call. Telegram takes the answer
only within seconds of the query, so it is tried once, unpaced (it is no message to a chat), and an
answer Telegram refuses or cannot take now is dropped: the person's client asks again as they type."""

from __future__ import annotations

import logging

from bots.delivery.context import DeliveryContext
from bots.delivery.replies import handles
from bots.messages.replies import AnswerInline, Outgoing
from bots.transport import Attempts, TelegramError

log = logging.getLogger(__name__)


@handles(AnswerInline)
async def answer_inline(context: DeliveryContext, outgoing: Outgoing, reply: AnswerInline) -> None:
    try:
        await context.call(None, lambda: context.sender.answer_inline_query(
            reply.inline_query_id, list(reply.results), reply.cache_time, reply.personal, reply.next_offset),
            Attempts(limit=1))
    except TelegramError as error:
        log.info("bot %s: an inline answer was not taken (%s): dropped", context.bot_key, type(error).__name__)
