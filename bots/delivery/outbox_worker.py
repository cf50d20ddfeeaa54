"""The outbox worker: claims one bot's due outbox messages (core/outbox.py), renders each for its
recipients, sends it through the send policy and marks it sent, retried later or dead-lettered as
soon as its outcome is known. A game notice for a player in the middle of a task is held for their
next screen instead."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bots.delivery.context import DeliveryContext, spending
from bots.delivery.replies import deliver_reply
from bots.messages.replies import Outgoing
from bots.transport import Attempts, ChatMigrated, Forbidden, Owed, Rejected, Unauthorized
from core import metrics
from core.outbox import Outbox, Route, claimer_id
from storage.models import OutboxMessage, OutboxStatus

log = logging.getLogger(__name__)


class OutboxWorker:
    def __init__(self, context: DeliveryContext, outbox: Outbox, route: Route,
                 holds: Callable[[OutboxMessage], bool], render: Callable[[OutboxMessage], list[Outgoing]],
                 mark_inactive: Callable[[int], None], on_trouble: Callable[..., None]):
        self.context = context
        self.outbox = outbox
        self.route = route  # which rows this bot may claim (Route.moderator_bot: the one bot for chats)
        self.holds = holds  # whether a notice waits for its player's next screen
        self.render = render  # a message as the chats it goes to see it
        self.mark_inactive = mark_inactive
        self.on_trouble = on_trouble  # (error, message, *args): an outage said once, or a logged failure
        self.claimer = claimer_id(context.bot_key)  # who holds the leases on the rows this bot claims
        self.stopped: str | None = None  # why this bot's outbox stopped (a refused token)
        self._moved_chats: dict[int, int] = {}  # groups seen migrating (the database has them too)

    async def deliver_once(self, limit: int = 20) -> int:
        """Claim a batch of due messages and deliver them one at a time. While Telegram is away
        nothing is claimed; what a batch could not try goes back untried. Returns how many were sent."""
        gate = self.context.policy.gate
        if self.stopped or not gate.open():
            return 0
        messages = await self.context.game(self.outbox.claim, self.route, self.claimer, limit)
        if not messages:
            return 0
        remaining = [message.id for message in messages]
        heartbeat = asyncio.create_task(self._keep_leases(remaining))
        sent = 0
        try:
            for message in messages:
                if not gate.open():  # Telegram went away mid-batch: the rest waits, untried
                    for message_id in remaining:
                        gate.outage.waiting(("outbox", message_id))
                    await self.context.game(self.outbox.release, list(remaining), self.claimer)
                    break
                try:
                    sent += await self._deliver(message)
                except Unauthorized as error:
                    self.stopped = str(error)
                    log.error("bot %s: Telegram refuses this bot's token (%s). Its outbox is stopped and %d "
                              "messages stay queued for it: fix the token in STICKTIONARY_BOTS and restart.",
                              self.context.bot_key, error, len(remaining))
                    await self.context.game(self.outbox.release, list(remaining), self.claimer)
                    break
                remaining.remove(message.id)
        finally:
            heartbeat.cancel()
        return sent

    async def run(self, interval: float = 1.0) -> None:
        """Deliver until cancelled, or until Telegram refuses the token."""
        while not self.stopped:
            try:
                while await self.deliver_once():
                    pass  # a full queue drains without pausing between batches
            except Exception as error:  # noqa: BLE001
                self.on_trouble(error, "bot %s: outbox delivery failed", self.context.bot_key)
            await asyncio.sleep(max(interval, min(self.context.policy.gate.wait_seconds(), 5.0)))

    async def _keep_leases(self, ids: list[int]) -> None:
        """Renew the leases of a batch still being sent (`ids` shrinks as messages are done)."""
        while True:
            await asyncio.sleep(self.outbox.lease_seconds / 3)
            try:
                await self.context.game(self.outbox.renew, list(ids), self.claimer)
            except Exception as error:  # noqa: BLE001 - the next beat tries again; a lost lease only risks a repeat
                self.on_trouble(error, "could not renew outbox leases of %s", self.context.bot_key)

    async def _deliver(self, message: OutboxMessage) -> int:
        """Send one claimed message to everyone it concerns; 1 if it went out. The claim counted
        one attempt; every call made for it spends from the same budget."""
        game, outbox, gate = self.context.game, self.outbox, self.context.policy.gate
        if await game(self.holds, message):
            await game(outbox.hold, message.id, self.claimer)  # for the player's next screen
            return 0
        try:
            outgoings = await game(self.render, message)
        except Exception as error:  # noqa: BLE001 - a rendering bug: it is retried, then dead-lettered
            log.exception("could not render outbox message %s", message.id)
            await game(outbox.retry_later, message.id, self.claimer, f"rendering failed: {error!r}")
            metrics.outbox_delivered(self.context.bot_key, "retry")
            return 0
        if not outgoings:
            await game(outbox.dead_letter, message.id, self.claimer,
                       "nobody to send it to (the player is inactive or has no chat; or no moderators)")
            metrics.outbox_delivered(self.context.bot_key, "dead")
            return 0
        # The claim counted this try already: the budget starts one below, so that a failed call
        # counts what the claim counted.
        budget = Attempts(message.attempts - 1, min(self.context.policy.attempts, outbox.max_attempts))
        delivered, permanent, temporary, tried = 0, [], [], False
        with spending(budget):
            for outgoing in outgoings:
                try:
                    await self._send_outgoing(outgoing)
                    delivered += 1
                except Forbidden as error:  # 403: the player blocked the bot, or the bot left that group
                    if outgoing.player_id is not None:
                        await game(self.mark_inactive, outgoing.player_id)
                    permanent.append(f"chat {outgoing.chat_id}: forbidden: {error}")
                except Rejected as error:
                    permanent.append(f"chat {outgoing.chat_id}: refused: {error}")
                except Owed as error:
                    tried = tried or error.attempted
                    temporary.append(f"chat {outgoing.chat_id}: {error}")
                    break  # Telegram is away: the other recipients wait too
        problems = "; ".join(permanent + temporary)
        if delivered:
            # Some recipients have it (several moderators): sending it again would repeat it to them.
            if problems:
                log.warning("outbox message %s reached %d of %d chats: %s", message.id, delivered, len(outgoings),
                            problems)
            metrics.outbox_delivered(self.context.bot_key, "sent")
            if not await game(outbox.mark_sent, message.id, self.claimer):
                log.warning("outbox message %s was sent after its lease was lost: it may go out twice", message.id)
            return 1
        if temporary:
            gate.outage.waiting(("outbox", message.id))
            if not tried:  # held back before any call: the claim does not count as an attempt
                await game(outbox.release, [message.id], self.claimer)
                return 0
            status = await game(outbox.retry_later, message.id, self.claimer, problems)
            metrics.outbox_delivered(self.context.bot_key, "dead" if status == OutboxStatus.DEAD else "retry")
            if status == OutboxStatus.DEAD:
                log.warning("outbox message %s dead-lettered after %d attempts: %s", message.id, budget.used,
                            problems)
            elif not gate.outage.active:
                log.warning("outbox message %s not sent (%s): %s", message.id, status or "lease lost", problems)
        else:
            await game(outbox.dead_letter, message.id, self.claimer, problems)
            metrics.outbox_delivered(self.context.bot_key, "dead")
            log.warning("outbox message %s dead-lettered: %s", message.id, problems)
        return 0

    async def _send_outgoing(self, outgoing: Outgoing) -> None:
        """Every reply of one outgoing message, following a group that migrated to a supergroup."""
        outgoing.chat_id = self._moved_chats.get(outgoing.chat_id, outgoing.chat_id)  # claimed before it moved
        for reply in outgoing.replies:
            for _ in range(3):  # a chat can migrate once; the loop only bounds a misbehaving server
                try:
                    await deliver_reply(self.context, outgoing, reply)
                    break
                except ChatMigrated as moved:
                    await self.context.game(self.outbox.migrate_chat, outgoing.chat_id, moved.new_chat_id)
                    log.info("chat %s migrated to %s: following it", outgoing.chat_id, moved.new_chat_id)
                    self._moved_chats[outgoing.chat_id] = moved.new_chat_id
                    outgoing.chat_id = moved.new_chat_id
            else:
                raise Rejected(f"chat {outgoing.chat_id} keeps migrating")
