"""What the screens show, read in the caller's session: stickers, the label screen with its
previews and taboo list, the retrieval grid, and the labeler's preliminary search result."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlmodel import Session, col, or_, select

from core.search import SearchIndexes
from core.text import content_tokens, tokenize
from core.views import (
    ContextMessage,
    LabelTaskView,
    PreviewView,
    QueryView,
    RetrievalTaskView,
    StickerView,
)
from core.vocabulary import TABOO_SHOWN, Verdict
from storage.models import ChatContext, LabelRound, Query, QueryStatus, RetrievalTask, Sticker


def stickers(session: Session, sticker_ids: Sequence[int]) -> list[StickerView]:
    if not sticker_ids:
        return []
    rows = {s.id: s for s in session.exec(select(Sticker).where(col(Sticker.id).in_(list(sticker_ids))))}
    return [StickerView(s.id, s.key, s.file_path, s.format) for s in (rows[i] for i in sticker_ids)]


def context_messages(session: Session, context_id: int | None) -> list[ContextMessage]:
    context = session.get(ChatContext, context_id) if context_id else None
    return [ContextMessage(m.get("sender", "?"), m.get("text", "")) for m in (context.messages if context else [])]


def retrieval_view(session: Session, task: RetrievalTask) -> RetrievalTaskView:
    texts = dict(session.exec(select(Query.id, Query.text).where(col(Query.id).in_(task.query_ids))).all())
    return RetrievalTaskView(task.id, task.language, [texts[i] for i in task.query_ids if i in texts],
                             stickers(session, task.candidate_ids), list(task.picks))


def taken(session: Session, label_round: LabelRound, own: set[str]) -> list[str]:
    """The queries the taboo rule refuses for this round, most frequent first (then oldest),
    at most TABOO_SHOWN: every non-discarded query of the sticker in the language by anyone
    but the player, seed queries and other players' drafts included, since a draft refuses
    the same text too. One text per normalized form (its first writing)."""
    return [text for _, text in taken_queries(session, label_round, own)]


def taken_queries(session: Session, label_round: LabelRound, own: set[str]) -> list[tuple[int, str]]:
    """`taken`, with the id of each text's query (what LabelRound.taboo_shown records)."""
    rows = session.exec(select(Query.normalized_text, Query.text, Query.id).where(
        Query.sticker_id == label_round.sticker_id, Query.language == label_round.language,
        col(Query.status) != QueryStatus.DISCARDED,
        or_(col(Query.author_id).is_(None), Query.author_id != label_round.player_id),
    ).order_by(Query.id)).all()
    counts: dict[str, int] = {}
    first: dict[str, tuple[int, str]] = {}
    for normalized, text, query_id in rows:
        if normalized in own:
            continue
        counts[normalized] = counts.get(normalized, 0) + 1
        first.setdefault(normalized, (query_id, text))
    order = sorted(first, key=lambda n: -counts[n])  # stable: equal counts stay oldest first
    return [first[n] for n in order[:TABOO_SHOWN]]


class Previews:
    """Searches without side effects over the live indexes: what a labeler's query finds."""

    def __init__(self, indexes: Callable[[], SearchIndexes], preview_hits: int) -> None:
        self.indexes = indexes
        self.preview_hits = preview_hits

    def preview(self, language: str, text: str, target: int | None = None):
        """A search without side effects (the preview of any text): only stickers sharing a word
        other than a function word with the text are found (BM25 scores unchanged)."""
        tokens = tokenize(text)
        return self.indexes()[language].search_sharing(tokens, content_tokens(tokens), k=self.preview_hits,
                                                       target=target)

    def of_query(self, session: Session, query: Query, target: int) -> PreviewView:
        """The labeler's honest preview of one query: where the sticker stands among all stickers
        of the language, the grid, where the sticker is in it, and why it has no rank."""
        index = self.indexes()[query.language]
        text = query.corrected_text or query.text
        result = self.preview(query.language, text, target)
        shown = stickers(session, [h.sticker_id for h in result.hits])
        position = next((i for i, s in enumerate(shown, 1) if s.id == target), None)
        if result.target_rank is not None:
            verdict = Verdict.RANKED
        elif target in index and set(index.document(target)) & set(tokenize(text)):
            verdict = Verdict.FUNCTION_WORDS
        else:
            verdict = Verdict.NOT_FOUND
        return PreviewView(QueryView(query.id, query.text, query.status), result.target_rank, shown,
                           total=len(index), verdict=verdict, target_position=position)

    def label_view(self, session: Session, label_round: LabelRound) -> LabelTaskView:
        queries = session.exec(select(Query).where(Query.label_round_id == label_round.id).order_by(Query.id)).all()
        previews = [self.of_query(session, q, label_round.sticker_id) for q in queries]
        return LabelTaskView(label_round.id, label_round.language, stickers(session, [label_round.sticker_id])[0],
                             context_messages(session, label_round.context_id),
                             [QueryView(q.id, q.text, q.status) for q in queries], previews=previews,
                             taken=taken(session, label_round, {q.normalized_text for q in queries}))

    def task_view(self, session: Session, work: LabelRound | RetrievalTask) -> LabelTaskView | RetrievalTaskView:
        if isinstance(work, LabelRound):
            return self.label_view(session, work)
        return retrieval_view(session, work)
