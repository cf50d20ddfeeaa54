"""BM25 over each sticker's usable queries, one index per language.

Scores are exactly those of ``rank_bm25.BM25Okapi`` on the same token lists (same idf with the
epsilon floor for very common terms, same length normalisation), but the index takes updates while
it serves searches:

- A write touches only the postings of the terms whose frequency in that one document changed.
  Nothing global is invalidated: a search computes what it needs for its own terms (their idf from
  their document frequency and the document count, avgdl from running totals).
- BM25Okapi floors a negative idf at epsilon times the AVERAGE idf over ALL terms. That average
  depends on every term's document frequency, so it is kept by buckets: how many terms have each
  document frequency. The sum of idf over the vocabulary is sum over buckets of count[df] * idf(n, df),
  a few hundred distinct df values however large the vocabulary, recomputed only when a bucket or n
  changed.
- Searches share the index, a write has it alone (a reader/writer lock), so no search sees half a write.
- A bulk build (``from_documents``, ``from_postings``) makes the postings in one numpy pass and keeps
  them as flat arrays; a term's postings become arrays of their own only when a write touches it.

Documents are numbered by slot; a sticker whose document becomes empty leaves the index (it no
longer counts in n, as it would not after a rebuild). Equal scores are ordered by sticker id, so two
processes that built the same documents in a different order rank ties the same.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, islice, repeat

import numpy as np

from core.read_write_lock import ReadWriteLock

_NO_DOCS = np.empty(0, dtype=np.int32)
_NO_TFS = np.empty(0, dtype=np.float64)
# Terms at least this frequent keep their weights between searches while the index does not change
# (below it, computing them is as cheap as looking them up).
_CACHED_DF = 256


@dataclass(frozen=True)
class SearchHit:
    sticker_id: int
    score: float


@dataclass(frozen=True)
class SearchResult:
    hits: list[SearchHit]
    target_rank: int | None  # 1-based; ties count against the target; None: the target scored 0
    matched: int  # documents with a score above zero


class BM25Index:
    def __init__(self, k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25) -> None:
        self.k1, self.b, self.epsilon = k1, b, epsilon
        self._lock = ReadWriteLock()
        self._doc_of: dict[int, int] = {}  # sticker id -> slot
        self._sticker_of = np.full(16, -1, dtype=np.int64)  # slot -> sticker id, -1: free
        self._doc_len = np.zeros(16, dtype=np.float64)
        self._slots = 0  # slots ever used
        self._free: list[int] = []
        self._total_tokens = 0
        # Postings of a term: (slots ascending, term frequencies). Terms of the bulk build are a
        # range of the flat arrays until a write gives them arrays of their own (in _postings).
        self._postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._bulk_term: dict[str, int] = {}
        self._bulk_offsets = np.zeros(1, dtype=np.int64)
        self._bulk_docs = _NO_DOCS
        self._bulk_tfs = _NO_TFS
        # A document's terms: the bulk build's slots are a range of flat (term id, tf) arrays until
        # a write replaces them (in _doc_terms).
        self._doc_terms: dict[int, dict[str, int]] = {}
        self._bulk_vocabulary: list[str] = []
        self._bulk_doc_offsets = np.zeros(1, dtype=np.int64)
        self._bulk_doc_term_ids = _NO_DOCS
        self._bulk_doc_tfs = _NO_DOCS
        self._bulk_slots = 0
        self._df_count: dict[int, int] = {}  # document frequency -> terms with it
        self._vocabulary_size = 0
        self._version = 0  # bumps on every write; cached weights and averages are tagged with it
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
        return build.index(**parameters)

    @classmethod
    def from_postings(cls, doc_lengths: np.ndarray, vocabulary: Sequence[str], offsets: np.ndarray,
                      docs: np.ndarray, tfs: np.ndarray, **parameters) -> BM25Index:
        """An index over documents 0..n-1 (their sticker ids are 0..n-1): term i's postings are
        docs[offsets[i]:offsets[i+1]] (ascending) with their term frequencies. No per-posting Python
        objects, so a million-query corpus stays small; it takes updates like any other index."""
        index = cls(**parameters)
        n = len(doc_lengths)
        offsets = np.asarray(offsets, dtype=np.int64)
        docs = np.asarray(docs)
        tf_counts = np.asarray(tfs)
        index._sticker_of = np.arange(max(n, 16), dtype=np.int64)
        index._sticker_of[n:] = -1
        index._doc_of = dict(zip(range(n), range(n), strict=True))
        index._doc_len = np.zeros(max(n, 16), dtype=np.float64)
        index._doc_len[:n] = doc_lengths
        index._slots = n
        index._total_tokens = int(np.asarray(doc_lengths).sum())
        index._bulk_offsets = offsets
        index._bulk_docs = docs.astype(np.int32)
        index._bulk_tfs = tf_counts.astype(np.float64)
        dfs = np.diff(offsets)
        index._bulk_term = {term: i for i, term in enumerate(vocabulary) if dfs[i] > 0}
        index._bulk_vocabulary = list(vocabulary)
        index._df_count = {df: count for df, count in enumerate(np.bincount(dfs).tolist()) if df and count}
        index._vocabulary_size = len(index._bulk_term)
        # The same postings by document: which terms each document holds, for its later updates.
        posting_terms = np.repeat(np.arange(len(vocabulary), dtype=np.int32), dfs)
        by_doc = np.argsort(docs, kind="stable")
        index._bulk_doc_term_ids = posting_terms[by_doc]
        index._bulk_doc_tfs = tf_counts[by_doc].astype(np.int32)
        index._bulk_doc_offsets = np.searchsorted(docs[by_doc], np.arange(n + 1)).astype(np.int64)
        index._bulk_slots = n
        index._version = 1
        return index

    # -- reading ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._doc_of)

    def __contains__(self, sticker_id: int) -> bool:
        return sticker_id in self._doc_of

    def sticker_ids(self) -> list[int]:
        """Every sticker with a document, in id order."""
        with self._lock.reading():
            version, ids = self._sorted_ids
            if version != self._version:
                ids = sorted(self._doc_of)
                self._sorted_ids = (self._version, ids)
            return list(ids)

    def document(self, sticker_id: int) -> list[str]:
        """The sticker's tokens (as a multiset, in term order)."""
        with self._lock.reading():
            slot = self._doc_of.get(sticker_id)
            terms = self._terms_of(slot) if slot is not None else {}
            return sorted(t for term, tf in terms.items() for t in [term] * tf)

    def prepare(self) -> None:
        """Compute the average idf and the weights of the frequent terms now rather than on first use."""
        with self._lock.reading():
            if not self._doc_of:
                return
            self._average_idf_now()
            for term, i in self._bulk_term.items():
                if self._bulk_offsets[i + 1] - self._bulk_offsets[i] >= _CACHED_DF:
                    self._weights(term)

    # -- writing ----------------------------------------------------------------------------
    def add_tokens(self, sticker_id: int, tokens: Sequence[str]) -> None:
        """Append tokens (one more usable query) to a sticker's document."""
        if not tokens:
            return
        with self._lock.writing():
            slot = self._doc_of.get(sticker_id)
            terms = Counter(self._terms_of(slot)) if slot is not None else Counter()
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

    def _terms_of(self, slot: int) -> dict[str, int]:
        terms = self._doc_terms.get(slot)
        if terms is not None:
            return terms
        if slot >= self._bulk_slots:
            return {}
        start, end = self._bulk_doc_offsets[slot], self._bulk_doc_offsets[slot + 1]
        vocabulary = self._bulk_vocabulary
        return {vocabulary[t]: tf for t, tf in zip(self._bulk_doc_term_ids[start:end].tolist(),
                                                    self._bulk_doc_tfs[start:end].tolist(), strict=True)}

    def _replace(self, sticker_id: int, new: Mapping[str, int]) -> None:
        slot = self._doc_of.get(sticker_id)
        if slot is None:
            if not new:
                return
            slot = self._new_slot(sticker_id)
            old: Mapping[str, int] = {}
        else:
            old = self._terms_of(slot)
        for term in old.keys() | new.keys():
            before, after = old.get(term, 0), new.get(term, 0)
            if before != after:
                self._set_tf(term, slot, after)
        length = sum(new.values())
        self._total_tokens += length - int(self._doc_len[slot])
        self._doc_len[slot] = length
        self._doc_terms[slot] = dict(new)
        if not new:
            del self._doc_of[sticker_id]
            self._sticker_of[slot] = -1
            self._free.append(slot)
        self._version += 1

    def _new_slot(self, sticker_id: int) -> int:
        if self._free:
            slot = self._free.pop()
        else:
            slot = self._slots
            self._slots += 1
            if slot >= len(self._doc_len):
                grow = len(self._doc_len)
                self._doc_len = np.concatenate([self._doc_len, np.zeros(grow)])
                self._sticker_of = np.concatenate([self._sticker_of, np.full(grow, -1, dtype=np.int64)])
        self._doc_of[sticker_id] = slot
        self._sticker_of[slot] = sticker_id
        self._doc_len[slot] = 0
        return slot

    def _set_tf(self, term: str, slot: int, tf: int) -> None:
        docs, tfs = self._postings_of(term)
        df = len(docs)
        at = int(np.searchsorted(docs, slot))
        present = at < df and docs[at] == slot
        if tf == 0:
            docs, tfs = np.delete(docs, at), np.delete(tfs, at)
        elif present:
            tfs = tfs.copy()
            tfs[at] = tf
        else:
            docs = np.insert(docs, at, slot).astype(np.int32, copy=False)
            tfs = np.insert(tfs, at, float(tf))
        self._postings[term] = (docs, tfs)
        self._weights_cache.pop(term, None)
        if len(docs) != df:
            self._move_bucket(df, len(docs))

    def _move_bucket(self, old_df: int, new_df: int) -> None:
        if old_df:
            left = self._df_count[old_df] - 1
            if left:
                self._df_count[old_df] = left
            else:
                del self._df_count[old_df]
        else:
            self._vocabulary_size += 1
        if new_df:
            self._df_count[new_df] = self._df_count.get(new_df, 0) + 1
        else:
            self._vocabulary_size -= 1

    # -- scoring ----------------------------------------------------------------------------
    def _postings_of(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        postings = self._postings.get(term)
        if postings is not None:
            return postings
        i = self._bulk_term.get(term)
        if i is None:
            return _NO_DOCS, _NO_TFS
        start, end = self._bulk_offsets[i], self._bulk_offsets[i + 1]
        return self._bulk_docs[start:end], self._bulk_tfs[start:end]

    def _average_idf_now(self) -> float:
        version, average = self._average_idf
        if version != self._version:
            n = len(self._doc_of)
            dfs = np.fromiter(self._df_count.keys(), dtype=np.float64, count=len(self._df_count))
            counts = np.fromiter(self._df_count.values(), dtype=np.float64, count=len(self._df_count))
            idf = np.log(n - dfs + 0.5) - np.log(dfs + 0.5)
            average = float(counts @ idf) / self._vocabulary_size if self._vocabulary_size else 0.0
            self._average_idf = (self._version, average)
        return average

    def _idf(self, df: int) -> float:
        n = len(self._doc_of)
        idf = math.log(n - df + 0.5) - math.log(df + 0.5)
        # BM25Okapi: negative idf (terms in more than half the documents) becomes a small floor.
        return self.epsilon * self._average_idf_now() if idf < 0 else idf

    def _weights(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        docs, tfs = self._postings_of(term)
        if not len(docs):
            return None
        cached = self._weights_cache.get(term)
        if cached is not None and cached[0] == self._version:
            return docs, cached[1]
        avgdl = self._total_tokens / len(self._doc_of)
        dl = self._doc_len[docs]
        denom = tfs + self.k1 * (1 - self.b + self.b * dl / avgdl)
        weights = self._idf(len(docs)) * (tfs * (self.k1 + 1) / denom)
        if len(docs) >= _CACHED_DF:
            self._weights_cache[term] = (self._version, weights)
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
        if matched > self._slots // 8:
            # bincount sums in one tight pass: several times faster than `dense[docs] += weights`.
            return None, np.bincount(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                                     minlength=self._slots)
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
            slots = [self._doc_of.get(s) for s in sticker_ids]
            return np.array([dense[slot] if slot is not None else 0.0 for slot in slots])

    def _dense_scores(self, tokens: Sequence[str]) -> np.ndarray:
        if not self._doc_of:
            return np.zeros(self._slots)
        docs, scores = self._accumulate(tokens)
        if docs is None:
            return scores
        dense = np.zeros(self._slots)
        dense[docs] = scores
        return dense

    def search(self, tokens: Sequence[str], k: int = 10, target: int | None = None) -> SearchResult:
        with self._lock.reading():
            if not self._doc_of or not tokens:
                return SearchResult([], None, 0)
            docs, scores = self._accumulate(tokens)
            if docs is None:
                return self._search_dense(scores, k, target)
            return self._search_sparse(docs, scores, k, target)

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
            if not self._doc_of or not tokens:
                return SearchResult([], None, 0)
            asked = set(tokens)
            held = [self._postings_of(term)[0] for term in dict.fromkeys(content) if term in asked]
            held = [docs for docs in held if len(docs)]
            if not held:
                return SearchResult([], None, 0)
            sharing = _sorted_unique(np.concatenate(held)) if len(held) > 1 else np.asarray(held[0])
            docs, scores = self._accumulate(tokens)
            if docs is None:
                shared_scores = scores[sharing]
            else:
                shared_scores = scores[np.searchsorted(docs, sharing)]  # every sharing doc is in docs
            return self._search_sparse(sharing, shared_scores, k, target)

    def _search_sparse(self, docs: np.ndarray, scores: np.ndarray, k: int, target: int | None) -> SearchResult:
        if not (scores > 0).all():
            positive = scores > 0
            docs, scores = docs[positive], scores[positive]
        if len(docs) > k:
            # Everything tied with the k-th best competes too, so ties resolve by sticker id.
            kth_best = scores[np.argpartition(-scores, k - 1)[k - 1]]
            top = np.nonzero(scores >= kth_best)[0]
        else:
            top = np.arange(len(docs))
        # Highest score first; equal scores by sticker id, so results are reproducible.
        stickers = self._sticker_of[docs[top]]
        order = np.lexsort((stickers, -scores[top]))[:k]
        hits = [SearchHit(s, score) for s, score in
                zip(stickers[order].tolist(), scores[top[order]].tolist(), strict=True)]
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
        # Selecting from the small end of the negated scores: argpartition(dense, n - k) degenerates
        # on the many zeros and ties (5-7 ms instead of 0.2 at 100K documents).
        kth_best = -np.partition(-dense, k - 1)[k - 1]
        greater = np.nonzero(dense > kth_best)[0]
        ties = np.nonzero(dense == kth_best)[0] if kth_best > 0 else greater[:0]
        wanted = k - len(greater)
        if len(ties) > wanted:
            # Of the documents tied with the k-th best, those of the lowest sticker ids.
            ties = ties[np.argpartition(self._sticker_of[ties], wanted - 1)[:wanted]] if wanted else ties[:0]
        top = np.concatenate([greater, ties])
        stickers = self._sticker_of[top]
        order = np.lexsort((stickers, -dense[top]))[:k]
        hits = [SearchHit(s, score) for s, score in zip(stickers[order].tolist(), dense[top[order]].tolist(),
                                                        strict=True)]
        target_rank = None
        if target is not None and target in self._doc_of and dense[self._doc_of[target]] > 0:
            target_rank = int(np.count_nonzero(dense >= dense[self._doc_of[target]]))
        return SearchResult(hits, target_rank, int(np.count_nonzero(dense > 0)))


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


class BulkBuild:
    """Collects documents chunk by chunk as two flat integer arrays (slot, term id per token) and
    turns them into an index's postings in one numpy pass: no Python object per token or posting,
    which is what a million-query start-up would otherwise spend its time and memory on."""

    def __init__(self) -> None:
        self._slot_of: dict[int, int] = {}
        self._term_ids: dict[str, int] = {}
        self._docs: list[np.ndarray] = []
        self._terms: list[np.ndarray] = []

    def add(self, sticker_ids: np.ndarray, lengths: np.ndarray, tokens: list[str]) -> None:
        """Row i of the chunk is `lengths[i]` tokens of sticker `sticker_ids[i]`; `tokens` are the
        rows' tokens one after the other."""
        if not tokens:
            return
        some = lengths > 0
        known, row_of = np.unique(sticker_ids[some], return_inverse=True)
        slot_of = self._slot_of
        slots = np.fromiter((slot_of.setdefault(s, len(slot_of)) for s in known.tolist()), dtype=np.int32,
                            count=len(known))
        self._docs.append(np.repeat(slots[row_of], lengths[some]))
        term_ids = self._term_ids
        for word in dict.fromkeys(tokens):  # the chunk's distinct words, found in C
            if word not in term_ids:
                term_ids[word] = len(term_ids)
        self._terms.append(np.fromiter(map(term_ids.__getitem__, tokens), dtype=np.int32, count=len(tokens)))

    def add_joined(self, sticker_ids: list[int], joined: list[str]) -> None:
        """Rows given as space-joined tokens (Query.search_tokens): split in one go, not row by row."""
        lengths = np.fromiter(map(str.count, joined, repeat(" ")), dtype=np.int64, count=len(joined))
        lengths += np.fromiter(map(bool, joined), dtype=np.int64, count=len(joined))
        self.add(np.asarray(sticker_ids, dtype=np.int64), lengths, " ".join(joined).split())

    def index(self, **parameters) -> BM25Index:
        n_docs = len(self._slot_of)
        docs = np.concatenate(self._docs).astype(np.int64) if self._docs else np.empty(0, dtype=np.int64)
        terms = np.concatenate(self._terms).astype(np.int64) if self._terms else np.empty(0, dtype=np.int64)
        self._docs, self._terms = [], []
        # One posting per (term, document) with its count, sorted by term and then document.
        pairs, tfs = np.unique(terms * max(n_docs, 1) + docs, return_counts=True)
        del terms
        posting_terms, posting_docs = np.divmod(pairs, max(n_docs, 1))
        del pairs
        offsets = np.searchsorted(posting_terms, np.arange(len(self._term_ids) + 1))
        index = BM25Index.from_postings(np.bincount(docs, minlength=n_docs), list(self._term_ids), offsets,
                                        posting_docs, tfs, **parameters)
        sticker_of = np.fromiter(self._slot_of, dtype=np.int64, count=n_docs)
        index._sticker_of[:n_docs] = sticker_of
        index._doc_of = dict(zip(sticker_of.tolist(), range(n_docs), strict=True))
        return index


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
