"""The outbox: what the engine and the jobs want a player or a chat to see, as a queue the running
bots drain — claimed with a lease, sent, then marked sent or dead-lettered; never marked sent
unless Telegram accepted it.

- **Claim.** A bot claims due rows it can deliver (see `Route`) in one transaction: on PostgreSQL
  `SELECT … FOR UPDATE SKIP LOCKED`, so concurrent claimers take disjoint rows without waiting for
  each other; on SQLite the single writer (BEGIN IMMEDIATE) does the same. The claim sets
  `status = sending`, `claimed_by` and `lease_until`, and counts the attempt. A sender killed
  mid-send leaves a lease that runs out: the row is then claimable again.
- **Outcome.** Every change after the claim is conditional on still holding it (`status = sending
  AND claimed_by = me`): a sender whose lease was taken over changes nothing.
- **Failures** put the row back with exponential backoff (`next_attempt_at`), so it never holds up
  the rows behind it; after `max_attempts`, or at once for a permanent refusal, it is dead with
  the reason. `sticktionary outbox` lists and retries dead letters.

Enqueueing happens inside the caller's transaction (the feedback is written with the score that
caused it); everything else is a step of its own in the outbox's `db` (`Transactions`: the
database, or an update's unit of work for an outbox bound with `within`).
"""

from __future__ import annotations

import copy
import os
import secrets
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, func, or_, update
from sqlmodel import Session, col, select

from storage.db import Transactions, insert_ignoring_conflicts
from storage.models import ChatMigration, OutboxMessage, OutboxStatus, Player, utcnow

PENDING, SENDING, SENT, DEAD = (OutboxStatus.PENDING, OutboxStatus.SENDING, OutboxStatus.SENT, OutboxStatus.DEAD)
HELD = OutboxStatus.HELD
_REASON_CHARS = 500  # OutboxMessage.last_error


@dataclass(frozen=True)
class Route:
    """Which rows a bot may claim: messages to players who use it (`Player.bot_key`) and, for the
    one designated bot, messages addressed to no player (moderator notices, posts to chats).

    A player with no bot recorded (they have not written since bot keys were) falls back to a bot
    of their language; with two bots of one language that can be a bot they never started (a dead
    letter, "chat not found") until their next message records theirs. Messages for players of a
    bot that no longer runs wait: `sticktionary outbox reroute OLD NEW` moves those players."""

    bot_key: str
    languages: tuple[str, ...] = ("en", "zh")
    moderator_bot: bool = False


def claimer_id(bot_key: str) -> str:
    """A name for one running bot, unique across processes and hosts: what a lease is held by."""
    return f"{bot_key}@{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"[:128]


class Outbox:
    def __init__(self, db: Transactions, clock: Callable[[], datetime] = utcnow, *, lease_seconds: float = 120,
                 max_attempts: int = 8, backoff_seconds: float = 5, max_backoff_seconds: float = 3600):
        self.db = db
        self.clock = clock
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds

    def within(self, db: Transactions) -> Outbox:
        """The same outbox working in `db` (an update's unit of work: a notice it folds into its
        screen is taken in the update's transaction)."""
        bound = copy.copy(self)
        bound.db = db
        return bound

    # ------------------------------------------------------------------ writing
    def enqueue(self, session: Session, key: str, kind: str, payload: dict, player_id: int | None = None,
                chat_id: int | None = None) -> bool:
        """Queue a message in the caller's transaction; a second one with the same key is ignored.
        A post to a group that has since migrated goes to its new chat id."""
        if chat_id is not None:
            migrated = session.get(ChatMigration, chat_id)
            if migrated is not None:
                chat_id = migrated.new_chat_id
        now = self.clock()
        return insert_ignoring_conflicts(session, OutboxMessage.__table__, [dict(
            dedupe_key=key, player_id=player_id, chat_id=chat_id, kind=kind, payload=payload, created_at=now,
            status=PENDING, attempts=0, next_attempt_at=now)], ["dedupe_key"]) == 1

    # ------------------------------------------------------------------ delivering
    def claim(self, route: Route, claimer: str, limit: int = 20) -> list[OutboxMessage]:
        """Lease up to `limit` due rows this route can deliver, oldest first."""
        now = self.clock()
        due = or_(and_(col(OutboxMessage.status) == PENDING, col(OutboxMessage.next_attempt_at) <= now),
                  and_(col(OutboxMessage.status) == SENDING, col(OutboxMessage.lease_until) < now))
        players_bot = or_(col(Player.bot_key) == route.bot_key,
                          and_(col(Player.bot_key).is_(None), col(Player.language).in_(route.languages)))
        mine = exists().where(col(Player.id) == col(OutboxMessage.player_id), players_bot)
        if route.moderator_bot:
            mine = or_(col(OutboxMessage.player_id).is_(None), mine)
        with self.db.write() as session:
            ids = list(session.exec(
                select(OutboxMessage.id).where(due, mine).order_by(OutboxMessage.id).limit(limit)
                .with_for_update(skip_locked=True, of=OutboxMessage.__table__)).all())
            if not ids:
                return []
            session.execute(update(OutboxMessage).where(col(OutboxMessage.id).in_(ids)).values(
                status=SENDING, claimed_by=claimer, lease_until=now + timedelta(seconds=self.lease_seconds),
                attempts=OutboxMessage.attempts + 1))
            session.expire_all()
            return list(session.exec(select(OutboxMessage).where(col(OutboxMessage.id).in_(ids))
                                     .order_by(OutboxMessage.id)).all())

    def _held(self, ids: Sequence[int], claimer: str):
        return and_(col(OutboxMessage.id).in_(list(ids)), col(OutboxMessage.status) == SENDING,
                    col(OutboxMessage.claimed_by) == claimer)

    def renew(self, ids: Sequence[int], claimer: str) -> int:
        """Extend the lease on rows still held (a long batch); returns how many are."""
        if not ids:
            return 0
        with self.db.write() as session:
            return session.execute(update(OutboxMessage).where(self._held(ids, claimer)).values(
                lease_until=self.clock() + timedelta(seconds=self.lease_seconds))).rowcount

    def mark_sent(self, message_id: int, claimer: str) -> bool:
        """Telegram accepted it. False if the lease was lost meanwhile (then nothing changes)."""
        with self.db.write() as session:
            return session.execute(update(OutboxMessage).where(self._held([message_id], claimer)).values(
                status=SENT, sent_at=self.clock(), lease_until=None)).rowcount == 1

    def dead_letter(self, message_id: int, claimer: str, reason: str) -> bool:
        """Give up on it for good (a permanent refusal, or nobody to send it to)."""
        with self.db.write() as session:
            return session.execute(update(OutboxMessage).where(self._held([message_id], claimer)).values(
                status=DEAD, lease_until=None, last_error=reason[:_REASON_CHARS])).rowcount == 1

    def retry_later(self, message_id: int, claimer: str, reason: str) -> str | None:
        """A failed attempt: back to pending after a growing pause, or dead once the attempts are
        used up. Returns the new status (None: the lease was lost, nothing changed)."""
        with self.db.write() as session:
            row = session.exec(select(OutboxMessage).where(self._held([message_id], claimer))
                               .with_for_update()).first()
            if row is None:
                return None
            if row.attempts >= self.max_attempts:
                row.status = DEAD
                row.last_error = f"gave up after {row.attempts} attempts: {reason}"[:_REASON_CHARS]
            else:
                pause = min(self.backoff_seconds * 2 ** (row.attempts - 1), self.max_backoff_seconds)
                row.status = PENDING
                row.next_attempt_at = self.clock() + timedelta(seconds=pause)
                row.last_error = reason[:_REASON_CHARS]
            row.lease_until = None
            session.add(row)
            return row.status

    def release(self, ids: Sequence[int], claimer: str) -> int:
        """Hand rows back untried (the bot is stopping, or Telegram refuses its token): pending,
        due now, and the claim does not count as an attempt."""
        if not ids:
            return 0
        with self.db.write() as session:
            return session.execute(update(OutboxMessage).where(self._held(ids, claimer)).values(
                status=PENDING, claimed_by=None, lease_until=None, next_attempt_at=self.clock(),
                attempts=OutboxMessage.attempts - 1)).rowcount

    # ------------------------------------------------------------------ held game notices
    # A game notice for a player who is in a task (feedback on an earlier round) is not sent in the
    # middle of it: the claimer holds it, and the player's next screen folds it in. It is marked
    # sent only once that screen went out, so none is lost and none shown twice.
    def hold(self, message_id: int, claimer: str) -> bool:
        with self.db.write() as session:
            return session.execute(update(OutboxMessage).where(self._held([message_id], claimer)).values(
                status=HELD, lease_until=None, claimed_by=None)).rowcount == 1

    def held_for(self, player_id: int, limit: int = 20) -> list[OutboxMessage]:
        """The player's held notices, oldest first."""
        with self.db.read() as session:
            return list(session.exec(select(OutboxMessage).where(
                OutboxMessage.player_id == player_id, col(OutboxMessage.status) == HELD)
                .order_by(OutboxMessage.id).limit(limit)).all())

    def take_held(self, ids: Sequence[int]) -> list[int]:
        """Lease held notices for the screen about to carry them, as a claim does: of `ids`, those
        this call took (another handling of the same player's update may have taken some first).
        Should the screen never go out, the lease runs out and they are delivered again."""
        if not ids:
            return []
        token = f"fold:{secrets.token_hex(8)}"
        with self.db.write() as session:
            session.execute(update(OutboxMessage).where(
                col(OutboxMessage.id).in_(list(ids)), col(OutboxMessage.status) == HELD).values(
                status=SENDING, claimed_by=token, lease_until=self.clock() + timedelta(seconds=self.lease_seconds),
                attempts=OutboxMessage.attempts + 1))
            return list(session.exec(select(OutboxMessage.id).where(
                col(OutboxMessage.id).in_(list(ids)), col(OutboxMessage.claimed_by) == token)).all())

    def mark_folded(self, ids: Sequence[int]) -> int:
        """Held notices that went out inside a screen: sent."""
        if not ids:
            return 0
        with self.db.write() as session:
            return session.execute(update(OutboxMessage).where(
                col(OutboxMessage.id).in_(list(ids)), col(OutboxMessage.status).in_((HELD, SENDING)),
                or_(col(OutboxMessage.claimed_by).is_(None), col(OutboxMessage.claimed_by).startswith("fold:"))).values(
                status=SENT, sent_at=self.clock(), lease_until=None)).rowcount

    def release_held(self, *busy_player_ids) -> int:
        """Held notices of players no longer in a task (it expired while they were away) go out as
        messages of their own; `busy_player_ids`: subqueries of the players still in one."""
        with self.db.write() as session:
            return session.execute(update(OutboxMessage).where(
                col(OutboxMessage.status) == HELD,
                *(col(OutboxMessage.player_id).not_in(busy) for busy in busy_player_ids)).values(
                status=PENDING)).rowcount

    def reroute(self, old_bot_key: str, new_bot_key: str) -> int:
        """Players of a bot renamed or retired go through another; returns how many players."""
        with self.db.write() as session:
            return session.execute(update(Player).where(col(Player.bot_key) == old_bot_key)
                                   .values(bot_key=new_bot_key)).rowcount

    def migrate_chat(self, old_chat_id: int, new_chat_id: int) -> int:
        """A group became a supergroup: remember its new id for later posts, and re-address what
        still waits for the old one. Returns how many waiting rows were re-addressed."""
        with self.db.write() as session:
            insert_ignoring_conflicts(session, ChatMigration.__table__, [dict(
                old_chat_id=old_chat_id, new_chat_id=new_chat_id, migrated_at=self.clock())], ["old_chat_id"])
            # Keep every old id one step from the newest (a chat that migrates twice).
            session.execute(update(ChatMigration).where(col(ChatMigration.old_chat_id) == old_chat_id)
                            .values(new_chat_id=new_chat_id))
            session.execute(update(ChatMigration).where(col(ChatMigration.new_chat_id) == old_chat_id)
                            .values(new_chat_id=new_chat_id))
            return session.execute(update(OutboxMessage).where(
                col(OutboxMessage.chat_id) == old_chat_id,
                col(OutboxMessage.status).in_([PENDING, SENDING])).values(chat_id=new_chat_id)).rowcount

    # ------------------------------------------------------------------ operating
    def counts(self) -> dict[str, int]:
        with self.db.read() as session:
            rows = session.exec(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all()
        counts = {status.value: 0 for status in OutboxStatus}
        counts.update({status: count for status, count in rows})
        return counts

    def listing(self, statuses: Sequence[str], limit: int = 50) -> list[tuple[OutboxMessage, str | None]]:
        """Rows in these states, oldest first, each with the bot its player uses."""
        with self.db.read() as session:
            return list(session.exec(
                select(OutboxMessage, Player.bot_key).join(Player, col(Player.id) == col(OutboxMessage.player_id),
                                                           isouter=True)
                .where(col(OutboxMessage.status).in_(list(statuses))).order_by(OutboxMessage.id).limit(limit)).all())

    def retry_dead(self, ids: Sequence[int] | None = None) -> int:
        """Dead letters (all, or these) go back to the queue with their attempts reset."""
        condition = col(OutboxMessage.status) == DEAD
        if ids is not None:
            condition = and_(condition, col(OutboxMessage.id).in_(list(ids)))
        with self.db.write() as session:
            return session.execute(update(OutboxMessage).where(condition).values(
                status=PENDING, attempts=0, next_attempt_at=self.clock(), claimed_by=None, lease_until=None)).rowcount

    def purge_sent(self, before: datetime) -> int:
        """Delete sent rows older than `before` (their dedupe keys go with them)."""
        with self.db.write() as session:
            return session.execute(delete(OutboxMessage).where(
                col(OutboxMessage.status) == SENT, col(OutboxMessage.sent_at) < before)).rowcount


__all__ = ["Outbox", "OutboxStatus", "Route", "claimer_id", "PENDING", "SENDING", "SENT", "DEAD"]
