"""The labeler's round: queries added one at a time (each refused on the spot when it repeats one
already collected for the sticker, the ESP Game's taboo), removed, submitted or skipped."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from core.game.errors import GameError
from core.game.expiry import close_rounds
from core.game.play_sessions import finish_task
from core.game.players import lock_player, playable_player
from core.game.views import Previews
from core.text import QueryTextError, clean_query_text, is_visual_only, normalize_query, taboo_key
from core.views import LabelTaskView, PreviewView, SubmitResult
from core.vocabulary import ErrorCode, Role
from storage.db import Transactions
from storage.models import (
    ChatContext,
    LabelRound,
    Query,
    QuerySource,
    QueryStatus,
    RoundStatus,
    Sticker,
)
from storage.settings import Settings


def context_priority(label_count: int, skip_count: int) -> int:
    """Lower is shown first: stickers with few queries, and rarely skipped ones."""
    return label_count + 2 * skip_count


def checked_query_text(text: str | None, max_chars: int) -> tuple[str, str]:
    """A player's text as a query (cleaned, normalized), or the reason it cannot be one. Purely
    visual descriptions (colour, shape, what is drawn) are refused with the paper's advice rather
    than stored without a rank, so the dataset never holds them."""
    try:
        cleaned = clean_query_text(text, max_chars=max_chars)
    except QueryTextError as error:
        raise GameError(error.code, error.detail) from None
    if is_visual_only(cleaned):
        raise GameError(ErrorCode.VISUAL_ONLY)
    return cleaned, normalize_query(cleaned)


def refuse_taboo(session: Session, sticker_id: int, language: str, normalized: str) -> None:
    """Taboo (ESP Game): a query already collected for the sticker is refused, and so is a
    near-duplicate of one (`taboo_key`: "so hot!!" repeats "so hot"), so that neither can score.
    Compared in Python over the sticker's queries (tens, not thousands), so rows stored before the
    key existed compare by it too. The sticker's row lock makes two concurrent writers of one text
    see each other."""
    session.exec(select(Sticker.id).where(Sticker.id == sticker_id).with_for_update())
    key = taboo_key(normalized)
    taken = session.exec(select(Query.normalized_text, Query.corrected_text).where(
        Query.sticker_id == sticker_id, Query.language == language, col(Query.status) != QueryStatus.DISCARDED,
    )).all()
    if any(taboo_key(text) == key for row in taken for text in row if text):
        raise GameError(ErrorCode.TABOO)


def own_open_round(session: Session, player_id: int, round_id: int) -> LabelRound:
    """The player's open round, locked for this transaction."""
    label_round = session.exec(select(LabelRound).where(LabelRound.id == round_id).with_for_update()).first()
    if label_round is None or label_round.player_id != player_id:
        raise GameError(ErrorCode.NOT_YOUR_ROUND)
    if label_round.status != RoundStatus.OPEN:
        raise GameError(ErrorCode.ROUND_CLOSED, label_round.status)
    return label_round


def count_on_context(session: Session, context_id: int, labels: int = 0, skips: int = 0) -> None:
    """Counters and priority change in SQL, from the row's current values: concurrent rounds on
    one sticker all count."""
    label_count, skip_count = ChatContext.label_count + labels, ChatContext.skip_count + skips
    session.execute(update(ChatContext).where(ChatContext.id == context_id)
                    .values(label_count=label_count, skip_count=skip_count,
                            priority=context_priority(label_count, skip_count))
                    .execution_options(synchronize_session=False))


class Labeling:
    def __init__(self, db: Transactions, settings: Settings, clock: Callable[[], datetime], previews: Previews) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.previews = previews

    def label_task(self, player_id: int, round_id: int) -> LabelTaskView:
        with self.db.read() as session:
            label_round = session.get(LabelRound, round_id)
            if label_round is None or label_round.player_id != player_id:
                raise GameError(ErrorCode.NOT_YOUR_ROUND)
            return self.previews.label_view(session, label_round)

    def add_query(self, player_id: int, round_id: int, text: str | None) -> PreviewView:
        """Add one query to an open round and return the preliminary search result for it."""
        with self.db.write() as session:
            playable_player(session, player_id, self.clock())
            label_round = own_open_round(session, player_id, round_id)
            cleaned, normalized = checked_query_text(text, self.settings.rules.max_query_chars)
            own = session.exec(select(Query).where(Query.label_round_id == round_id)).all()
            if any(taboo_key(q.normalized_text) == taboo_key(normalized) for q in own):
                raise GameError(ErrorCode.REPEAT_OWN)
            if len(own) >= self.settings.rules.max_queries_per_round:
                raise GameError(ErrorCode.TOO_MANY_QUERIES, str(self.settings.rules.max_queries_per_round))
            refuse_taboo(session, label_round.sticker_id, label_round.language, normalized)
            query = Query(sticker_id=label_round.sticker_id, language=label_round.language, text=cleaned,
                          normalized_text=normalized, author_id=player_id, label_round_id=round_id,
                          source=QuerySource.LABELER, status=QueryStatus.DRAFT, created_at=self.clock())
            session.add(query)
            session.flush()
            return self.previews.of_query(session, query, label_round.sticker_id)

    def remove_query(self, player_id: int, round_id: int, query_id: int) -> None:
        with self.db.write() as session:
            lock_player(session, player_id)
            own_open_round(session, player_id, round_id)
            removed = session.execute(delete(Query).where(Query.id == query_id, Query.label_round_id == round_id,
                                                          Query.status == QueryStatus.DRAFT)
                                      .execution_options(synchronize_session=False)).rowcount
            if not removed:
                raise GameError(ErrorCode.NOT_YOUR_QUERY)

    def submit_round(self, player_id: int, round_id: int) -> SubmitResult:
        with self.db.write() as session:
            playable_player(session, player_id, self.clock())
            label_round = own_open_round(session, player_id, round_id)
            drafts = session.execute(update(Query).where(Query.label_round_id == round_id,
                                                         Query.status == QueryStatus.DRAFT)
                                     .values(status=QueryStatus.PENDING).returning(Query.id)
                                     .execution_options(synchronize_session=False)).scalars().all()
            if not drafts:
                raise GameError(ErrorCode.NO_QUERIES)
            submitted = session.execute(update(LabelRound).where(LabelRound.id == round_id,
                                                                 LabelRound.status == RoundStatus.OPEN)
                                        .values(status=RoundStatus.SUBMITTED, submitted_at=self.clock())
                                        .execution_options(synchronize_session=False)).rowcount
            if not submitted:
                raise GameError(ErrorCode.ROUND_CLOSED)
            if label_round.context_id is not None:
                count_on_context(session, label_round.context_id, labels=len(drafts))
            finish_task(session, player_id, Role.LABELER, label_round.language, self.clock(),
                        self.settings.rules.session_gap_minutes)
            return SubmitResult(round_id, len(drafts))

    def skip_round(self, player_id: int, round_id: int) -> None:
        with self.db.write() as session:
            lock_player(session, player_id)
            label_round = own_open_round(session, player_id, round_id)
            if not close_rounds(session, RoundStatus.SKIPPED, LabelRound.id == round_id):
                raise GameError(ErrorCode.ROUND_CLOSED)
            if label_round.context_id is not None:
                count_on_context(session, label_round.context_id, skips=1)
            finish_task(session, player_id, Role.LABELER, label_round.language, self.clock(),
                        self.settings.rules.session_gap_minutes, counts=False)
