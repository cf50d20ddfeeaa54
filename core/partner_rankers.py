"""The partners' models: how a partner ranks a retrieval grid from a labeler's queries.

- `Bm25Ranker` scores each candidate by BM25 over the queries already collected for it (the live
  search index, core/search.py): the round's own queries are pending, so they are in no document,
  and the partner ranks from what other players and the seeds said about the grid's stickers.
- `DenseRanker` (the `semantic` extra and a local model: semantic_model_en / _zh) compares the mean
  sentence embedding of the round's queries with the mean embedding of each candidate's collected
  queries (cosine). Without the extra or the model it says so once and BM25 answers instead.

A ranker returns every candidate, best first (ties in grid order: the grid is a seeded shuffle), and
its name, which names the partner player that answers (`bm25`, `dense`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from sqlmodel import Session, col, select

from core.search import SearchIndexes
from core.text import tokenize
from storage.models import USABLE_QUERY_STATUSES, Query
from storage.settings import Settings

log = logging.getLogger(__name__)

# What the labeler reads as the partner's name ("🤖 BM25 found your sticker…").
PARTNER_LABELS = {"bm25": "BM25", "dense": "Dense"}


def best_first(candidate_ids: Sequence[int], scores: Sequence[float]) -> list[int]:
    order = sorted(range(len(candidate_ids)), key=lambda i: (-float(scores[i]), i))
    return [candidate_ids[i] for i in order]


class Bm25Ranker:
    name = "bm25"

    def __init__(self, indexes: Callable[[], SearchIndexes]) -> None:
        self.indexes = indexes

    def rank(self, session: Session, language: str, queries: Sequence[str],
             candidate_ids: Sequence[int]) -> tuple[str, list[int]]:
        tokens = [token for text in queries for token in tokenize(text)]
        scores = self.indexes()[language].sticker_scores(tokens, candidate_ids)
        return self.name, best_first(candidate_ids, scores)


class DenseRanker:
    name = "dense"

    def __init__(self, settings: Settings, fallback: Bm25Ranker) -> None:
        self.settings = settings
        self.fallback = fallback
        self._unavailable: dict[str, str] = {}

    def _scorer(self, language: str):
        from core.semantic import SemanticUnavailable, loaded_scorer

        if language in self._unavailable:
            return None
        model = self.settings.exports.semantic_model_zh if language == "zh" else self.settings.exports.semantic_model_en
        try:
            return loaded_scorer(model, language)
        except SemanticUnavailable as error:
            self._unavailable[language] = str(error)
            log.warning("the dense partner is unavailable for %s, BM25 answers instead: %s", language, error)
            return None

    def rank(self, session: Session, language: str, queries: Sequence[str],
             candidate_ids: Sequence[int]) -> tuple[str, list[int]]:
        scorer = self._scorer(language)
        if scorer is None or not queries:
            return self.fallback.rank(session, language, queries, candidate_ids)
        rows = session.exec(select(Query.sticker_id, Query.text, Query.corrected_text).where(
            col(Query.sticker_id).in_(candidate_ids), Query.language == language,
            col(Query.status).in_(USABLE_QUERY_STATUSES))).all()
        collected: dict[int, list[str]] = {}
        for sticker_id, text, corrected in rows:
            collected.setdefault(sticker_id, []).append(corrected or text)
        asked = scorer.embed(list(queries)).mean(0)
        scores = []
        for sticker_id in candidate_ids:
            texts = collected.get(sticker_id)
            if not texts:
                scores.append(-2.0)  # below any cosine: nothing is known about it
                continue
            described = scorer.embed(texts).mean(0)
            scores.append(float((asked * described).sum() / (asked.norm() * described.norm()).clamp(min=1e-9)))
        return self.name, best_first(candidate_ids, scores)


def partner_ranker(settings: Settings, indexes: Callable[[], SearchIndexes]) -> Bm25Ranker | DenseRanker:
    bm25 = Bm25Ranker(indexes)
    return DenseRanker(settings, bm25) if settings.rules.partner_model == "dense" else bm25


__all__ = ["PARTNER_LABELS", "Bm25Ranker", "DenseRanker", "best_first", "partner_ranker"]
