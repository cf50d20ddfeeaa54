"""BM25 over each sticker's usable queries, one index per language.

Scores are exactly those of ``rank_bm25.BM25Okapi`` on the same token lists (same idf with the
epsilon floor for very common terms, same length normalisation), but the index takes updates while
it serves searches:

- A write touches only the postings of the terms whose frequency in that one document changed
  (core/search_postings.py). Nothing global is invalidated: a search computes what it needs for its
  own terms (their idf from their document frequency and the document count, avgdl from running
  totals).
- BM25Okapi floors a negative idf at epsilon times the AVERAGE idf over ALL terms. That average
  depends on every term's document frequency, so it is kept by buckets: how many terms have each
  document frequency. The sum of idf over the vocabulary is sum over buckets of count[df] * idf(n, df),
  a few hundred distinct df values however large the vocabulary, recomputed only when a bucket or n
  changed.
- Searches share the index, a write has it alone (a reader/writer lock), so no search sees half a write.
- A bulk build (``from_documents``, ``from_postings``, ``from_build``) makes the postings in one numpy
  pass (core/search_postings.py). The top k and the target's rank are core/search_ranking.py.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain, islice

import numpy as np

from core.read_write_lock import ReadWriteLock
from core.search_postings import BulkBuild, Postings
from core.search_ranking import SearchHit, SearchResult, top_of_dense, top_of_sparse

__all__ = ["BM25Index", "BulkBuild", "SearchHit", "SearchIndexes", "SearchResult"]

# Terms at least this frequent keep their weights between searches while the index does not change
# (below it, computing them is as cheap as looking them up).
_CACHED_DF = 256


class BM25Index:
    def __init__(self, k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25, *,
                 postings: Postings | None = None) -> None:
        self.k1, self.b, self.epsilon = k1, b, epsilon
        self._lock = ReadWriteLock()
        self._p = postings if postings is not None else Postings()
        self._average_idf: tuple[int, float] = (-1, 0.0)
        self._weights_cache: dict[str, tuple[int, np.ndarray]] = {}
        self._sorted_ids: tuple[int, list[int]] = (-1, [])

    # -- bulk builds ------------------------------------------------------------------------
    @classmethod
    def from_documents(cls, documents: Iterable[tuple[int, Sequence[str]]], **parameters) -> BM25Index:
        """One pass over (sticker id, tokens) pairs; a sticker may come several times (one query
        each), its tokens are appended. Equal to add_tokens called with the same pairs."""
        build = BulkBuild()
        pairs = iter(documents)
        while chunk := list(islice(pairs, 20_000)):
            build.add(np.fromiter((s for s, _ in chunk), dtype=np.int64, count=len(chunk)),
                      np.fromiter((len(t) for _, t in chunk), dtype=np.int64, count=len(chunk)),
                      list(chain.from_iterable(t for _, t in chunk)))
        return cls.from_build(build, **parameters)

    @classmethod
    def from_build(cls, build: BulkBuild, **parameters) -> BM25Index:
        """An index over everything a bulk build collected."""
        return cls(**parameters, postings=build.postings())

    @classmethod
    def from_postings(cls, doc_lengths: np.ndarray, vocabulary: Sequence[str], offsets: np.ndarray,
                      docs: np.ndarray, tfs: np.ndarray, **parameters) -> BM25Index:
        """An index over documents 0..n-1 (their sticker ids are 0..n-1): term i's postings are
        docs[offsets[i]:offsets[i+1]] (ascending) with their term frequencies. No per-posting Python
        objects, so a million-query corpus stays small; it takes updates like any other index."""
        return cls(**parameters, postings=Postings.from_arrays(doc_lengths, vocabulary, offsets, docs, tfs))

    # -- reading ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._p.doc_of)

    def __contains__(self, sticker_id: int) -> bool:
        return sticker_id in self._p.doc_of

    def sticker_ids(self) -> list[int]:
        """Every sticker with a document, in id order."""
        with self._lock.reading():
            version, ids = self._sorted_ids
            if version != self._p.version:
                ids = sorted(self._p.doc_of)
                self._sorted_ids = (self._p.version, ids)
            return list(ids)

    def document(self, sticker_id: int) -> list[str]:
        """The sticker's tokens (as a multiset, in term order)."""
        with self._lock.reading():
            slot = self._p.doc_of.get(sticker_id)
            terms = self._p.terms_of(slot) if slot is not None else {}
            return sorted(t for term, tf in terms.items() for t in [term] * tf)

    def prepare(self) -> None:
        """Compute the average idf and the weights of the frequent terms now rather than on first use."""
        with self._lock.reading():
            p = self._p
            if not p.doc_of:
                return
            self._average_idf_now()
            for term, i in p.bulk_term.items():
                if p.bulk_offsets[i + 1] - p.bulk_offsets[i] >= _CACHED_DF:
                    self._weights(term)

    # -- writing ----------------------------------------------------------------------------
    def add_tokens(self, sticker_id: int, tokens: Sequence[str]) -> None:
        """Append tokens (one more usable query) to a sticker's document."""
        if not tokens:
            return
        with self._lock.writing():
            slot = self._p.doc_of.get(sticker_id)
            terms = Counter(self._p.terms_of(slot)) if slot is not None else Counter()
            terms.update(tokens)
            self._replace(sticker_id, terms)

    def replace_document(self, sticker_id: int, tokens: Sequence[str]) -> None:
        """Set one sticker's document (after a correction or a removal); no tokens: it leaves."""
        self.replace_documents({sticker_id: tokens})

    def replace_documents(self, documents: Mapping[int, Sequence[str]]) -> None:
        """Set several stickers' documents at once: a search sees all of them changed or none."""
        with self._lock.writing():
            for sticker_id, tokens in documents.items():
                self._replace(sticker_id, Counter(tokens))

    def _replace(self, sticker_id: int, new: Mapping[str, int]) -> None:
        for term in self._p.replace(sticker_id, new):
            self._weights_cache.pop(term, None)

    # -- scoring ----------------------------------------------------------------------------
    def _average_idf_now(self) -> float:
        p = self._p
        version, average = self._average_idf
        if version != p.version:
            n = len(p.doc_of)
            dfs = np.fromiter(p.df_count.keys(), dtype=np.float64, count=len(p.df_count))
            counts = np.fromiter(p.df_count.values(), dtype=np.float64, count=len(p.df_count))
            idf = np.log(n - dfs + 0.5) - np.log(dfs + 0.5)
            average = float(counts @ idf) / p.vocabulary_size if p.vocabulary_size else 0.0
            self._average_idf = (p.version, average)
        return average

    def _idf(self, df: int) -> float:
        n = len(self._p.doc_of)
        idf = math.log(n - df + 0.5) - math.log(df + 0.5)
        # BM25Okapi: negative idf (terms in more than half the documents) becomes a small floor.
        return self.epsilon * self._average_idf_now() if idf < 0 else idf

    def _weights(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        p = self._p
        docs, tfs = p.postings_of(term)
        if not len(docs):
            return None
        cached = self._weights_cache.get(term)
        if cached is not None and cached[0] == p.version:
            return docs, cached[1]
        avgdl = p.total_tokens / len(p.doc_of)
        dl = p.doc_len[docs]
        denom = tfs + self.k1 * (1 - self.b + self.b * dl / avgdl)
        weights = self._idf(len(docs)) * (tfs * (self.k1 + 1) / denom)
        if len(docs) >= _CACHED_DF:
            self._weights_cache[term] = (p.version, weights)
        return docs, weights

    def _accumulate(self, tokens: Iterable[str]) -> tuple[np.ndarray | None, np.ndarray]:
        """Scores of the documents that share a token with the query.

        Returns (slots, scores); slots is None when so many documents matched that the scores are
        given densely, for every slot in order (cheaper than gathering them).
        """
        parts = [w for w in (self._weights(t) for t in tokens) if w is not None]
        if not parts:
            return np.empty(0, dtype=np.int32), np.empty(0)
        if len(parts) == 1:
            return parts[0]
        matched = sum(len(p[0]) for p in parts)
        if matched > self._p.slots // 8:
            # bincount sums in one tight pass: several times faster than `dense[docs] += weights`.
            return None, np.bincount(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                                     minlength=self._p.slots)
        docs = np.concatenate([p[0] for p in parts])
        weights = np.concatenate([p[1] for p in parts])
        unique_docs, inverse = np.unique(docs, return_inverse=True)
        return unique_docs, np.bincount(inverse, weights=weights, minlength=len(unique_docs))

    def scores(self, tokens: Sequence[str]) -> np.ndarray:
        """Dense scores over all slots (as BM25Okapi.get_scores when no document ever left)."""
        with self._lock.reading():
            return self._dense_scores(tokens)

    def sticker_scores(self, tokens: Sequence[str], sticker_ids: Sequence[int]) -> np.ndarray:
        """Scores of the given stickers (0 for a sticker without a document)."""
        with self._lock.reading():
            dense = self._dense_scores(tokens)
            slots = [self._p.doc_of.get(s) for s in sticker_ids]
            return np.array([dense[slot] if slot is not None else 0.0 for slot in slots])

    def _dense_scores(self, tokens: Sequence[str]) -> np.ndarray:
        if not self._p.doc_of:
            return np.zeros(self._p.slots)
        docs, scores = self._accumulate(tokens)
        if docs is None:
            return scores
        dense = np.zeros(self._p.slots)
        dense[docs] = scores
        return dense

    def search(self, tokens: Sequence[str], k: int = 10, target: int | None = None) -> SearchResult:
        with self._lock.reading():
            p = self._p
            if not p.doc_of or not tokens:
                return SearchResult([], None, 0)
            docs, scores = self._accumulate(tokens)
            target_slot = p.doc_of.get(target) if target is not None else None
            if docs is None:
                return top_of_dense(p.sticker_of, target_slot, scores, k)
            return top_of_sparse(p.sticker_of, target_slot, docs, scores, k)

    def search_sharing(self, tokens: Sequence[str], content: Iterable[str], k: int = 10,
                       target: int | None = None) -> SearchResult:
        """`search` restricted to the documents that hold at least one of the `content` terms.

        Scores are exactly those of `search` (every token counts, with its BM25 weight), but a
        document that shares only other tokens with the query (function words: "of", 了) neither
        appears among the hits nor counts as ahead of the target; the target itself gets no rank
        unless it holds a content term. The index and `search` are unchanged (parity with
        rank_bm25 holds); this is the labeler's preview."""
        content = list(content)
        if tokens and set(tokens) <= set(content):
            # Every token is a content term: a document scores above zero exactly when it holds one,
            # so this is `search`, several times cheaper than gathering the sharing documents first.
            return self.search(tokens, k=k, target=target)
        with self._lock.reading():
            p = self._p
            if not p.doc_of or not tokens:
                return SearchResult([], None, 0)
            asked = set(tokens)
            held = [p.postings_of(term)[0] for term in dict.fromkeys(content) if term in asked]
            held = [docs for docs in held if len(docs)]
            if not held:
                return SearchResult([], None, 0)
            sharing = _sorted_unique(np.concatenate(held)) if len(held) > 1 else np.asarray(held[0])
            docs, scores = self._accumulate(tokens)
            if docs is None:
                shared_scores = scores[sharing]
            else:
                shared_scores = scores[np.searchsorted(docs, sharing)]  # every sharing doc is in docs
            target_slot = p.doc_of.get(target) if target is not None else None
            return top_of_sparse(p.sticker_of, target_slot, sharing, shared_scores, k)


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique by sorting: numpy 2.3's np.unique hashes instead, some 50 times slower on postings of
    tens of thousands of documents (45 ms instead of 1 at 100K stickers, in the preview and inline search)."""
    values = np.sort(values)
    if len(values) < 2:
        return values
    keep = np.empty(len(values), dtype=bool)
    keep[0] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


class SearchIndexes:
    """One BM25Index per language (pools never mix languages)."""

    def __init__(self, indexes: Mapping[str, BM25Index] | None = None) -> None:
        self._by_language: dict[str, BM25Index] = dict(indexes or {})
        self._guard = threading.Lock()

    def __getitem__(self, language: str) -> BM25Index:
        index = self._by_language.get(language)
        if index is None:
            with self._guard:
                index = self._by_language.setdefault(language, BM25Index())
        return index

    def languages(self) -> list[str]:
        return sorted(self._by_language)
