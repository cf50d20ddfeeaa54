"""Awaited input: what a player's next text message answers instead of being a query (a suggested
query for a grid candidate, a moderator's correction), good for one message only."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import col, select

from core.game.moderation import ModeratorPolicy
from core.game.players import lock_player
from core.vocabulary import AwaitedInput
from storage.db import Transactions
from storage.models import Player, Query, QueryStatus, RetrievalTask, TaskStatus


class AwaitedText:
    def __init__(self, db: Transactions, moderators: ModeratorPolicy) -> None:
        self.db = db
        self.moderators = moderators

    def expect(self, player_id: int, kind: str, ref: int) -> None:
        """The player's next text message answers `kind` (AwaitedInput.SUGGEST: for retrieval task
        `ref`; AwaitedInput.CORRECT: the moderator's new text for query `ref`) instead of being a query."""
        kind = AwaitedInput(kind)
        with self.db.write() as session:
            session.execute(update(Player).where(Player.id == player_id).values(awaiting_kind=kind, awaiting_ref=ref))

    def take(self, player_id: int) -> tuple[AwaitedInput, int] | None:
        """What the player's next text message answers, if anything, and forget it: it is good for
        one message only, and only while what it belongs to is still open (the retrieval task still
        the player's open task, the query still waiting for review)."""
        with self.db.write() as session:
            player = lock_player(session, player_id)
            kind, ref = player.awaiting_kind, player.awaiting_ref
            if kind is None:
                return None
            player.awaiting_kind = player.awaiting_ref = None
            session.add(player)
            kind = AwaitedInput(kind)
            if kind == AwaitedInput.SUGGEST:
                open_task = session.exec(select(RetrievalTask.id).where(
                    RetrievalTask.id == ref, RetrievalTask.retriever_id == player_id,
                    RetrievalTask.status == TaskStatus.OPEN)).first()
                return (kind, ref) if open_task is not None else None
            waiting = session.exec(select(Query.id).where(Query.id == ref,
                                                          Query.status == QueryStatus.NEEDS_REVIEW)).first()
            return (kind, ref) if waiting is not None and self.moderators.allows(player) else None

    def forget(self, player_id: int) -> None:
        with self.db.write() as session:
            session.execute(update(Player).where(Player.id == player_id, col(Player.awaiting_kind).is_not(None))
                            .values(awaiting_kind=None, awaiting_ref=None))
