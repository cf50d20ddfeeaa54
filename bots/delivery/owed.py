"""Delivering the replies to handled updates, as durably as outbox notices: what Telegram cannot
take now stays owed (the inbox row keeps the tries spent and the replies already sent) and goes
out, in the chat's order, once Telegram answers again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from bots.delivery.context import DeliveryContext, spending
from bots.delivery.replies import deliver_reply
from bots.inbox import Inbox, Taken
from bots.log_context import handling_update
from bots.messages.replies import AnswerCallback, LivePhoto, LiveText
from bots.transport import Attempts, ChatMigrated, Forbidden, Owed, Rejected, Unauthorized
from core import metrics
from core.outbox import Outbox
from storage.models import utcnow

log = logging.getLogger(__name__)

# Stands in an owed update's replies for a live-screen edit a later owed reply makes again.
SUPERSEDED = object()


def drop_superseded_edits(owed: list[Taken]) -> None:
    """Of owed replies, an in-place edit of a live screen that a later owed update edits again is
    not sent: the later one shows what the player should see. Screens that move, finish or carry
    held notices are always sent."""
    latest: dict[tuple[type, str], int] = {}
    for position, taken in enumerate(owed):
        for reply in taken.outgoing.replies if taken.outgoing is not None else ():
            if isinstance(reply, LiveText | LivePhoto) and not reply.fresh:
                latest[(type(reply), reply.screen)] = position
    for position, taken in enumerate(owed[:-1]):
        outgoing = taken.outgoing
        if outgoing is None or outgoing.outbox_ids:
            continue
        for index in range(taken.replies_sent, len(outgoing.replies)):
            reply = outgoing.replies[index]
            if (isinstance(reply, LiveText | LivePhoto) and not reply.fresh and not reply.final
                    and latest.get((type(reply), reply.screen), position) > position):
                outgoing.replies[index] = SUPERSEDED


class OwedReplies:
    """One bot's delivery of its updates' replies. `finished(update_id)` is told of each update done."""

    def __init__(self, context: DeliveryContext, inbox: Inbox, outbox: Outbox,
                 mark_inactive: Callable[[int], None], finished: Callable[[int], None],
                 reply_max_age: float = 3600.0):
        self.context = context
        self.inbox = inbox
        self.outbox = outbox
        self.mark_inactive = mark_inactive  # the player blocked the bot
        self.finished = finished
        self.reply_max_age = timedelta(seconds=reply_max_age)
        self.dropped = 0  # updates whose replies were given up on purpose (each said once, with why)

    async def deliver(self, owed: list[Taken]) -> list[Taken]:
        """Deliver owed replies, oldest update first; returns what is still owed (Telegram away)."""
        drop_superseded_edits(owed)
        for index, taken in enumerate(owed):
            if not await self.deliver_update(taken):
                return owed[index:]
        return []

    async def finish(self, taken: Taken, dropped: str | None = None) -> None:
        await self.context.game(self.inbox.mark_done, taken.update_id, dropped)
        metrics.update_done(self.context.bot_key, taken.received_at)
        self.finished(taken.update_id)

    async def deliver_update(self, taken: Taken) -> bool:
        """The rest of one update's replies; True once it is done (delivered, or dropped on purpose),
        False while they are still owed."""
        outgoing, context = taken.outgoing, self.context
        if outgoing is None or taken.replies_sent >= len(outgoing.replies):
            await self.finish(taken)
            return True
        age = utcnow() - taken.received_at
        if age > self.reply_max_age:
            return await self._drop(taken, "too_old", f"still undelivered {age.total_seconds():.0f} s after the update came "
                                           f"(STICKTIONARY_REPLY_MAX_AGE_SECONDS)")
        budget = Attempts(taken.send_attempts, context.policy.attempts)
        if budget.spent:
            return await self._drop(taken, "attempts", f"gave up after {budget.used} attempts")
        # The answer to a button press goes out alongside the screens rather than after them: it is
        # not a chat message, so it need not wait its turn, and it stops the spinner on the
        # player's button sooner (Telegram asks bots to answer promptly). Only on the first try,
        # by the process that handled it: a press is answered once, and late is for nothing.
        answer = next((r for r in outgoing.replies if isinstance(r, AnswerCallback)), None)
        answering = None
        if answer is not None and not taken.resumed and taken.replies_sent == 0 and taken.send_attempts == 0:
            answering = asyncio.create_task(deliver_reply(context, outgoing, answer))
        sent_before = taken.replies_sent
        with self._delivering(taken, budget):
            try:
                for index in range(taken.replies_sent, len(outgoing.replies)):
                    reply = outgoing.replies[index]
                    if reply is not answer and reply is not SUPERSEDED:
                        await deliver_reply(context, outgoing, reply)
                    taken.replies_sent = index + 1
                    if outgoing.outbox_ids and index == outgoing.notices_at:  # the held notices reached the player
                        await context.game(self.outbox.mark_folded, list(outgoing.outbox_ids))
                        outgoing.outbox_ids = []
                if outgoing.outbox_ids:
                    await context.game(self.outbox.mark_folded, list(outgoing.outbox_ids))
            except Owed as error:
                progressed = budget.used != taken.send_attempts or taken.replies_sent != sent_before
                taken.send_attempts = budget.used
                if budget.spent:
                    return await self._drop(taken, "attempts", f"gave up after {budget.used} attempts ({error})")
                context.policy.gate.outage.waiting(("update", context.bot_key, taken.update_id))
                if progressed:  # kept for whoever goes on (held back by the gate: nothing to keep)
                    await context.game(self.inbox.still_owed, taken.update_id, taken.send_attempts,
                                       taken.replies_sent)
                return False
            except Forbidden as error:  # 403: the player blocked the bot
                if outgoing.player_id is not None:
                    await context.game(self.mark_inactive, outgoing.player_id)
                return await self._drop(taken, "forbidden", f"forbidden: {error}", quiet=True)
            except (Rejected, ChatMigrated, Unauthorized) as error:  # refused for good: retrying cannot help
                return await self._drop(taken, "refused", f"refused: {type(error).__name__}: {error}")
            finally:
                if answering is not None:
                    await answering  # it never raises a TelegramError: a late answer is harmless
        await self.finish(taken)
        return True

    @contextmanager
    def _delivering(self, taken: Taken, budget: Attempts) -> Iterator[None]:
        """While an update's replies go out: their calls spend its budget, its log lines name it."""
        with spending(budget), handling_update(self.context.bot_key, taken.update_id, taken.outgoing.player_id):
            yield

    async def _drop(self, taken: Taken, kind: str, reason: str, *, quiet: bool = False) -> bool:
        """Give up on an update's remaining replies on purpose: one line with the reason, counted
        (`kind`: too_old, attempts, forbidden or refused)."""
        self.dropped += 1
        metrics.reply_dropped(self.context.bot_key, kind)
        (log.info if quiet else log.warning)("bot %s: the replies to update %s were dropped: %s",
                                             self.context.bot_key, taken.update_id, reason)
        await self.finish(taken, reason)
        return True
