"""Moderation: the review queue of rounds a retriever missed (accept, correct, discard, skip), chat
contexts waiting for approval, and the one policy that says who may moderate.

Who is a moderator: the database flag `Player.is_moderator` decides, everywhere (`ModeratorPolicy`).
The settings list (STICKTIONARY_MODERATORS, Telegram user ids) only grants it: the conversation sets
the flag when a listed person writes to a bot, and moderator notices go to the listed ids. Taking an
id off the list does not revoke the flag; `players.set_moderator(id, False)` does. One source decides,
so a check cannot pass in one place and fail in another.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from core.game.errors import GameError
from core.game.views import context_messages, stickers
from core.outbox import Outbox
from core.search_log import record_search_change, search_tokens
from core.text import QueryTextError, clean_query_text
from core.views import QueryView, ReviewItem, ReviewQuery, ReviewRound
from core.vocabulary import ErrorCode, NoticeKind
from storage.db import Transactions
from storage.models import (
    ChatContext,
    ContextStatus,
    LabelRound,
    Player,
    PlayerKind,
    Query,
    QueryStatus,
    RetrievalTask,
    Review,
    TaskStatus,
)
from storage.settings import Settings


class ModeratorPolicy:
    """Whether a player may moderate: the one check the game and the screens use."""

    @staticmethod
    def allows(player: Player | None) -> bool:
        """Whether the player may moderate (the database flag)."""
        return player is not None and bool(player.is_moderator)

    def require(self, session: Session, player_id: int) -> Player:
        """The moderator's row, or GameError("not_moderator")."""
        moderator = session.get(Player, player_id)
        if not self.allows(moderator):
            raise GameError(ErrorCode.NOT_MODERATOR)
        return moderator


def missed_task(session: Session, round_id: int | None) -> RetrievalTask | None:
    """The latest answered task of a person on the round that missed its sticker (what its review
    shows; a partner model's miss sends nothing to review)."""
    return session.exec(select(RetrievalTask).join(Player, col(Player.id) == RetrievalTask.retriever_id).where(
        RetrievalTask.label_round_id == round_id, Player.kind == PlayerKind.HUMAN,
        RetrievalTask.status == TaskStatus.ANSWERED, col(RetrievalTask.hit_rank).is_(None))
        .order_by(col(RetrievalTask.id).desc())).first()


class Moderation:
    def __init__(self, db: Transactions, settings: Settings, clock: Callable[[], datetime], outbox: Outbox,
                 policy: ModeratorPolicy) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.outbox = outbox
        self.policy = policy

    # ------------------------------------------------------------------ the queue
    def pending_reviews(self, moderator_id: int, language: str | None = None, limit: int = 10,
                        after_id: int = 0) -> list[ReviewItem]:
        with self.db.read() as session:
            self.policy.require(session, moderator_id)
            statement = select(Query).where(Query.status == QueryStatus.NEEDS_REVIEW, Query.id > after_id)
            if language:
                statement = statement.where(Query.language == language)
            items = []
            for query in session.exec(statement.order_by(Query.id).limit(limit)).all():
                round_queries = session.exec(select(Query).where(Query.label_round_id == query.label_round_id)
                                             .order_by(Query.id)).all()
                missed = missed_task(session, query.label_round_id)
                author = session.get(Player, query.author_id) if query.author_id else None
                items.append(ReviewItem(
                    QueryView(query.id, query.text, query.status), query.language,
                    stickers(session, [query.sticker_id])[0],
                    [QueryView(q.id, q.text, q.status) for q in round_queries],
                    stickers(session, missed.picks) if missed else [],
                    author.pseudonym if author else None))
            return items

    def review_round(self, moderator_id: int, language: str | None = None, index: int = 0,
                     round_id: int | None = None) -> ReviewRound | None:
        """One round of the review queue: the `index`-th (0-based) of the rounds with queries waiting
        for a decision, in `language` if given; or the round `round_id`, wherever it stands. Rounds a
        moderator skipped come after all others, oldest skip first."""
        with self.db.read() as session:
            self.policy.require(session, moderator_id)
            skipped = func.max(Query.review_skipped_at)
            waiting = select(Query.label_round_id, skipped.label("skipped"), func.min(Query.id).label("first")).where(
                Query.status == QueryStatus.NEEDS_REVIEW)
            if language:
                waiting = waiting.where(Query.language == language)
            order = waiting.group_by(Query.label_round_id).subquery()
            queue = session.execute(select(order.c.label_round_id).order_by(
                order.c.skipped.is_not(None), order.c.skipped, order.c.first)).scalars().all()
            if round_id is not None:
                if round_id not in queue:
                    return self._review_view(session, round_id, 0, len(queue))
                index = queue.index(round_id)
            if not queue:
                return None
            index = max(0, min(index, len(queue) - 1))
            return self._review_view(session, queue[index], index + 1, len(queue))

    @staticmethod
    def _review_view(session: Session, round_id: int, position: int, waiting: int) -> ReviewRound | None:
        label_round = session.get(LabelRound, round_id)
        if label_round is None:
            return None
        queries = session.exec(select(Query).where(Query.label_round_id == round_id).order_by(Query.id)).all()
        missed = missed_task(session, round_id)
        author = session.get(Player, label_round.player_id)
        return ReviewRound(round_id, label_round.language, stickers(session, [label_round.sticker_id])[0],
                           context_messages(session, label_round.context_id),
                           [ReviewQuery(q.id, q.final_text, q.status, q.text) for q in queries],
                           stickers(session, missed.picks) if missed else [],
                           author.pseudonym if author else None, position, waiting)

    def review_round_of(self, moderator_id: int, query_id: int) -> int | None:
        """The labeler round a query belongs to (what its review screen shows)."""
        with self.db.read() as session:
            self.policy.require(session, moderator_id)
            return session.exec(select(Query.label_round_id).where(Query.id == query_id)).first()

    def skip_review_round(self, moderator_id: int, round_id: int) -> None:
        """The round goes to the back of the review queue (for every moderator: the skip is kept)."""
        with self.db.write() as session:
            self.policy.require(session, moderator_id)
            skipped = session.execute(update(Query).where(Query.label_round_id == round_id,
                                                          Query.status == QueryStatus.NEEDS_REVIEW)
                                      .values(review_skipped_at=self.clock())).rowcount
            if not skipped:
                raise GameError(ErrorCode.ALREADY_REVIEWED)

    def review_counts(self, moderator_id: int) -> dict[str, int]:
        with self.db.read() as session:
            self.policy.require(session, moderator_id)
            rows = session.exec(select(Query.status, func.count()).group_by(Query.status)).all()
            counts = {status: 0 for status in QueryStatus}
            counts.update({status: n for status, n in rows})
            counts["contexts_waiting"] = session.exec(select(func.count()).where(
                ChatContext.status == ContextStatus.CANDIDATE).select_from(ChatContext)).one()
            return counts

    # ------------------------------------------------------------------ decisions
    def accept_query(self, moderator_id: int, query_id: int) -> QueryView:
        return self._decide(moderator_id, query_id, "accept", QueryStatus.ACCEPTED)

    def correct_query(self, moderator_id: int, query_id: int, text: str | None) -> QueryView:
        try:
            cleaned = clean_query_text(text, max_chars=self.settings.rules.max_query_chars)
        except QueryTextError as error:
            raise GameError(error.code, error.detail) from None
        return self._decide(moderator_id, query_id, "correct", QueryStatus.CORRECTED, cleaned)

    def discard_query(self, moderator_id: int, query_id: int) -> QueryView:
        return self._decide(moderator_id, query_id, "discard", QueryStatus.DISCARDED)

    def _decide(self, moderator_id: int, query_id: int, action: str, new_status: str,
                corrected: str | None = None) -> QueryView:
        with self.db.write() as session:
            moderator = self.policy.require(session, moderator_id)
            query = session.get(Query, query_id)
            if query is None:
                raise GameError(ErrorCode.UNKNOWN_QUERY)
            values = {"status": new_status}
            if corrected is not None:
                values["corrected_text"] = corrected
            if new_status != QueryStatus.DISCARDED:
                values["validated_at"] = self.clock()
                values["search_tokens"] = search_tokens(corrected or query.final_text)
            decided = session.execute(update(Query).where(Query.id == query_id,
                                                          Query.status == QueryStatus.NEEDS_REVIEW)
                                      .values(**values)).rowcount
            if not decided:
                raise GameError(ErrorCode.ALREADY_REVIEWED, query.status)
            session.add(Review(query_id=query_id, moderator_id=moderator.id, action=action,
                               old_text=query.text, new_text=corrected, created_at=self.clock()))
            session.flush()
            session.refresh(query)
            record_search_change(session, query.language, [query.sticker_id], action)
            self._report_review(session, query)
            return QueryView(query.id, query.final_text, query.status)

    def _report_review(self, session: Session, query: Query) -> None:
        """Once no query of the round waits for a moderator, its author hears every decision on it
        in one notice."""
        if query.author_id is None or query.label_round_id is None:
            return
        rows = session.exec(select(Query).where(Query.label_round_id == query.label_round_id)
                            .order_by(Query.id)).all()
        if any(q.status == QueryStatus.NEEDS_REVIEW for q in rows):
            return
        decisions = dict(session.exec(select(Review.query_id, Review.action).where(
            col(Review.query_id).in_([q.id for q in rows]))).all())
        decided = [{"text": q.text, "status": q.status, "corrected": q.corrected_text}
                   for q in rows if q.id in decisions]
        if decided:
            self.outbox.enqueue(session, f"review:round:{query.label_round_id}", NoticeKind.REVIEW_DECIDED,
                                {"round_id": query.label_round_id, "language": query.language, "queries": decided},
                                player_id=query.author_id)

    # ------------------------------------------------------------------ chat contexts
    def pending_contexts(self, moderator_id: int, language: str | None = None, limit: int = 10) -> list[ChatContext]:
        with self.db.read() as session:
            self.policy.require(session, moderator_id)
            statement = select(ChatContext).where(ChatContext.status == ContextStatus.CANDIDATE)
            if language:
                statement = statement.where(ChatContext.language == language)
            return list(session.exec(statement.order_by(ChatContext.id).limit(limit)).all())

    def review_context(self, moderator_id: int, context_id: int, approve: bool) -> None:
        with self.db.write() as session:
            moderator = self.policy.require(session, moderator_id)
            status = ContextStatus.APPROVED if approve else ContextStatus.REJECTED
            decided = session.execute(update(ChatContext).where(
                ChatContext.id == context_id, ChatContext.status == ContextStatus.CANDIDATE
            ).values(status=status)).rowcount
            if not decided:
                raise GameError(ErrorCode.ALREADY_REVIEWED)
            session.add(Review(context_id=context_id, moderator_id=moderator.id,
                               action="approve_context" if approve else "reject_context", created_at=self.clock()))
