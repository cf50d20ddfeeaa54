"""BM25 over each sticker's usable queries, one index per language.

Scores are exactly those of ``rank_bm25.BM25Okapi`` on the same token lists (same idf with the
epsilon floor for very common terms, same length normalisation), but the index is incremental:
adding a validated query touches one posting per token, and a search only reads the postings of
its own tokens, so a live preview over 100K stickers takes well under a millisecond.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SearchHit:
    sticker_id: int
    score: float


@dataclass(frozen=True)
class SearchResult:
    hits: list[SearchHit]
    target_rank: int | None  # 1-based; ties count against the target; None: the target scored 0
    matched: int  # documents with a score above zero


class _Postings:
    """One term's postings; arrays are rebuilt only when the term changed since the last search."""

    __slots__ = ("tf_by_doc", "docs", "tfs", "weights", "weights_version")

    def __init__(self) -> None:
        self.tf_by_doc: dict[int, int] = {}
        self.docs: np.ndarray | None = None
        self.tfs: np.ndarray | None = None
        self.weights: np.ndarray | None = None
        self.weights_version = -1

    def changed(self) -> None:
        self.docs = self.tfs = self.weights = None

    def document_frequency(self) -> int:
        return len(self.docs) if self.tf_by_doc is None else len(self.tf_by_doc)


class BM25Index:
    def __init__(self, k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25) -> None:
        self.k1, self.b, self.epsilon = k1, b, epsilon
        self._doc_of: dict[int, int] = {}  # sticker id -> document number
        self._sticker_of: list[int] = []
        self._doc_tokens: list[list[str]] = []
        self._doc_len = np.zeros(16, dtype=np.float64)
        self._postings: dict[str, _Postings] = {}
        self._total_tokens = 0
        self._version = 0  # bumps on every change: cached idf and weights depend on it
        self._idf: dict[str, float] = {}
        self._idf_version = -1

    @classmethod
    def from_postings(cls, doc_lengths: np.ndarray, vocabulary: Sequence[str], offsets: np.ndarray,
                      docs: np.ndarray, tfs: np.ndarray, **parameters) -> BM25Index:
        """A read-only index built in one go: documents 0..n-1, term i's postings are
        docs[offsets[i]:offsets[i+1]] (ascending) with their term frequencies. No per-document token
        lists and no per-posting Python objects, so a million-query corpus stays small (the export's
        evaluation uses it); scores are the same as an index built with add_tokens."""
        index = cls(**parameters)
        n = len(doc_lengths)
        index._sticker_of = list(range(n))
        index._doc_of = dict(zip(index._sticker_of, index._sticker_of, strict=True))
        index._doc_len = np.asarray(doc_lengths, dtype=np.float64)
        index._total_tokens = int(index._doc_len.sum())
        index._doc_tokens = None  # read-only: add_tokens and replace_document refuse
        for i, term in enumerate(vocabulary):
            postings = _Postings()
            postings.tf_by_doc = None
            postings.docs = docs[offsets[i]:offsets[i + 1]]
            postings.tfs = tfs[offsets[i]:offsets[i + 1]].astype(np.float64)
            index._postings[term] = postings
        index._version = 1
        return index

    # -- building ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._sticker_of)

    def __contains__(self, sticker_id: int) -> bool:
        return sticker_id in self._doc_of

    def add_tokens(self, sticker_id: int, tokens: Sequence[str]) -> None:
        """Append tokens (one more usable query) to a sticker's document."""
        if self._doc_tokens is None:
            raise TypeError("this index was built with from_postings and is read-only")
        if not tokens:
            return
        doc = self._doc_of.get(sticker_id)
        if doc is None:
            doc = len(self._sticker_of)
            self._doc_of[sticker_id] = doc
            self._sticker_of.append(sticker_id)
            self._doc_tokens.append([])
            if doc >= len(self._doc_len):
                self._doc_len = np.concatenate([self._doc_len, np.zeros(len(self._doc_len))])
        self._doc_tokens[doc].extend(tokens)
        self._doc_len[doc] += len(tokens)
        self._total_tokens += len(tokens)
        for token in tokens:
            postings = self._postings.get(token)
            if postings is None:
                postings = self._postings[token] = _Postings()
            postings.tf_by_doc[doc] = postings.tf_by_doc.get(doc, 0) + 1
            postings.changed()
        self._version += 1

    def replace_document(self, sticker_id: int, tokens: Sequence[str]) -> None:
        """Rebuild one sticker's document (after a correction or a removal)."""
        if self._doc_tokens is None:
            raise TypeError("this index was built with from_postings and is read-only")
        doc = self._doc_of.get(sticker_id)
        if doc is not None:
            old = self._doc_tokens[doc]
            for token in old:
                postings = self._postings[token]
                tf = postings.tf_by_doc.pop(doc, 0)
                if tf:
                    postings.changed()
                if not postings.tf_by_doc:
                    del self._postings[token]
            self._total_tokens -= len(old)
            self._doc_len[doc] = 0
            self._doc_tokens[doc] = []
            self._version += 1
        if tokens:
            self.add_tokens(sticker_id, tokens)

    def document(self, sticker_id: int) -> list[str]:
        doc = self._doc_of.get(sticker_id)
        if self._doc_tokens is None:
            raise TypeError("this index was built with from_postings and keeps no token lists")
        return list(self._doc_tokens[doc]) if doc is not None else []

    def sticker_ids(self) -> list[int]:
        return list(self._sticker_of)

    def prepare(self) -> None:
        """Compute idf and every term's weights now rather than on first use (after a bulk load)."""
        self._refresh_idf()
        if self._sticker_of:
            for token in self._postings:
                self._weights(token)

    # -- scoring ----------------------------------------------------------------------------
    def _refresh_idf(self) -> None:
        if self._idf_version == self._version:
            return
        n = len(self._sticker_of)
        terms = list(self._postings)
        df = np.fromiter((self._postings[t].document_frequency() for t in terms), dtype=np.float64,
                         count=len(terms))
        idf = np.log(n - df + 0.5) - np.log(df + 0.5)
        # BM25Okapi: negative idf (terms in more than half the documents) becomes a small floor.
        if len(idf):
            average_idf = float(idf.sum()) / len(idf)
            idf = np.where(idf < 0, self.epsilon * average_idf, idf)
        self._idf = dict(zip(terms, idf.tolist(), strict=True))
        self._idf_version = self._version

    def _weights(self, token: str) -> tuple[np.ndarray, np.ndarray] | None:
        postings = self._postings.get(token)
        if postings is None:
            return None
        if postings.docs is None:
            items = sorted(postings.tf_by_doc.items())
            postings.docs = np.fromiter((d for d, _ in items), dtype=np.int64, count=len(items))
            postings.tfs = np.fromiter((t for _, t in items), dtype=np.float64, count=len(items))
        if postings.weights_version != self._version or postings.weights is None:
            n = len(self._sticker_of)
            avgdl = self._total_tokens / n
            tfs = postings.tfs
            dl = self._doc_len[postings.docs]
            denom = tfs + self.k1 * (1 - self.b + self.b * dl / avgdl)
            postings.weights = self._idf[token] * (tfs * (self.k1 + 1) / denom)
            postings.weights_version = self._version
        return postings.docs, postings.weights

    def _accumulate(self, tokens: Iterable[str]) -> tuple[np.ndarray | None, np.ndarray]:
        """Scores of the documents that share a token with the query.

        Returns (documents, scores); documents is None when so many documents matched that the
        scores are given densely, for every document in order (cheaper than gathering them).
        """
        self._refresh_idf()
        n = len(self._sticker_of)
        parts = [w for w in (self._weights(t) for t in tokens) if w is not None]
        if not parts:
            return np.empty(0, dtype=np.int64), np.empty(0)
        if len(parts) == 1:
            return parts[0]
        matched = sum(len(p[0]) for p in parts)
        if matched > n // 8:
            # bincount sums in one tight pass: several times faster than `dense[docs] += weights`.
            return None, np.bincount(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                                     minlength=n)
        docs = np.concatenate([p[0] for p in parts])
        weights = np.concatenate([p[1] for p in parts])
        unique_docs, inverse = np.unique(docs, return_inverse=True)
        return unique_docs, np.bincount(inverse, weights=weights, minlength=len(unique_docs))

    def scores(self, tokens: Sequence[str]) -> np.ndarray:
        """Dense scores over all documents, in document order (as BM25Okapi.get_scores)."""
        if not self._sticker_of:
            return np.zeros(0)
        docs, scores = self._accumulate(tokens)
        if docs is None:
            return scores
        dense = np.zeros(len(self._sticker_of))
        dense[docs] = scores
        return dense

    def search(self, tokens: Sequence[str], k: int = 10, target: int | None = None) -> SearchResult:
        if not self._sticker_of or not tokens:
            return SearchResult([], None, 0)
        docs, scores = self._accumulate(tokens)
        if docs is None:
            return self._search_dense(scores, k, target)
        if not (scores > 0).all():
            positive = scores > 0
            docs, scores = docs[positive], scores[positive]
        if len(docs) > k:
            # Everything tied with the k-th best competes too, so ties resolve by document order.
            kth_best = scores[np.argpartition(-scores, k - 1)[k - 1]]
            top = np.nonzero(scores >= kth_best)[0]
        else:
            top = np.arange(len(docs))
        # Highest score first; equal scores in document order, so results are reproducible.
        order = top[np.lexsort((docs[top], -scores[top]))][:k]
        hits = [SearchHit(self._sticker_of[d], float(s)) for d, s in
                zip(docs[order].tolist(), scores[order].tolist(), strict=True)]
        target_rank = None
        if target is not None and target in self._doc_of:
            where = np.searchsorted(docs, self._doc_of[target])
            if where < len(docs) and docs[where] == self._doc_of[target]:
                target_rank = int(np.count_nonzero(scores >= scores[where]))
        return SearchResult(hits, target_rank, len(docs))

    def _search_dense(self, dense: np.ndarray, k: int, target: int | None) -> SearchResult:
        """Top k over a dense score array (most documents matched), without gathering it first."""
        n = len(dense)
        k = min(k, n)
        kth_best = dense[np.argpartition(dense, n - k)[n - k:]].min()
        # Ties with the k-th best resolve by document order: nonzero() lists documents in order, so
        # the first few of the tied ones are the right ones, however many tie (common terms do).
        greater = np.nonzero(dense > kth_best)[0]
        ties = np.nonzero(dense == kth_best)[0][: k - len(greater)] if kth_best > 0 else greater[:0]
        top = np.concatenate([greater, ties])
        order = top[np.lexsort((top, -dense[top]))][:k]
        hits = [SearchHit(self._sticker_of[d], float(s)) for d, s in zip(order.tolist(), dense[order].tolist(),
                                                                          strict=True)]
        target_rank = None
        if target is not None and target in self._doc_of and dense[self._doc_of[target]] > 0:
            target_rank = int(np.count_nonzero(dense >= dense[self._doc_of[target]]))
        return SearchResult(hits, target_rank, int(np.count_nonzero(dense > 0)))


class SearchIndexes:
    """One BM25Index per language (pools never mix languages)."""

    def __init__(self) -> None:
        self._by_language: dict[str, BM25Index] = {}

    def __getitem__(self, language: str) -> BM25Index:
        index = self._by_language.get(language)
        if index is None:
            index = self._by_language[language] = BM25Index()
        return index

    def languages(self) -> list[str]:
        return sorted(self._by_language)
