"""What a BM25 index holds, and the writes that keep it consistent: each term's postings (documents
ascending, with term frequencies), each document's terms and length, and how many terms have each
document frequency (the buckets the average idf is computed from; core/search.py scores with them).

A bulk build (`BulkBuild`, `Postings.from_arrays`) makes the postings in one numpy pass and keeps them
as flat arrays; a term's postings, and a document's terms, become objects of their own only when a
write touches them. Documents are numbered by slot; a sticker whose document becomes empty leaves
(it no longer counts in n, as it would not after a rebuild) and its slot is reused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import repeat

import numpy as np

NO_DOCS = np.empty(0, dtype=np.int32)
NO_TFS = np.empty(0, dtype=np.float64)


class Postings:
    """The documents of one index. Not thread-safe: the index's reader/writer lock guards it."""

    def __init__(self) -> None:
        self.doc_of: dict[int, int] = {}  # sticker id -> slot
        self.sticker_of = np.full(16, -1, dtype=np.int64)  # slot -> sticker id, -1: free
        self.doc_len = np.zeros(16, dtype=np.float64)
        self.slots = 0  # slots ever used
        self._free: list[int] = []
        self.total_tokens = 0
        # Postings of a term: (slots ascending, term frequencies). Terms of the bulk build are a
        # range of the flat arrays until a write gives them arrays of their own (in _postings).
        self._postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.bulk_term: dict[str, int] = {}
        self.bulk_offsets = np.zeros(1, dtype=np.int64)
        self._bulk_docs = NO_DOCS
        self._bulk_tfs = NO_TFS
        # A document's terms: the bulk build's slots are a range of flat (term id, tf) arrays until
        # a write replaces them (in _doc_terms).
        self._doc_terms: dict[int, dict[str, int]] = {}
        self._bulk_vocabulary: list[str] = []
        self._bulk_doc_offsets = np.zeros(1, dtype=np.int64)
        self._bulk_doc_term_ids = NO_DOCS
        self._bulk_doc_tfs = NO_DOCS
        self._bulk_slots = 0
        self.df_count: dict[int, int] = {}  # document frequency -> terms with it
        self.vocabulary_size = 0
        self.version = 0  # bumps on every write; what is computed from the postings is tagged with it

    @classmethod
    def from_arrays(cls, doc_lengths: np.ndarray, vocabulary: Sequence[str], offsets: np.ndarray,
                    docs: np.ndarray, tfs: np.ndarray) -> Postings:
        """Documents 0..n-1 (their sticker ids are 0..n-1): term i's postings are
        docs[offsets[i]:offsets[i+1]] (ascending) with their term frequencies. No per-posting Python
        objects, so a million-query corpus stays small."""
        postings = cls()
        n = len(doc_lengths)
        offsets = np.asarray(offsets, dtype=np.int64)
        docs = np.asarray(docs)
        tf_counts = np.asarray(tfs)
        postings.sticker_of = np.arange(max(n, 16), dtype=np.int64)
        postings.sticker_of[n:] = -1
        postings.doc_of = dict(zip(range(n), range(n), strict=True))
        postings.doc_len = np.zeros(max(n, 16), dtype=np.float64)
        postings.doc_len[:n] = doc_lengths
        postings.slots = n
        postings.total_tokens = int(np.asarray(doc_lengths).sum())
        postings.bulk_offsets = offsets
        postings._bulk_docs = docs.astype(np.int32)
        postings._bulk_tfs = tf_counts.astype(np.float64)
        dfs = np.diff(offsets)
        postings.bulk_term = {term: i for i, term in enumerate(vocabulary) if dfs[i] > 0}
        postings._bulk_vocabulary = list(vocabulary)
        postings.df_count = {df: count for df, count in enumerate(np.bincount(dfs).tolist()) if df and count}
        postings.vocabulary_size = len(postings.bulk_term)
        # The same postings by document: which terms each document holds, for its later updates.
        posting_terms = np.repeat(np.arange(len(vocabulary), dtype=np.int32), dfs)
        by_doc = np.argsort(docs, kind="stable")
        postings._bulk_doc_term_ids = posting_terms[by_doc]
        postings._bulk_doc_tfs = tf_counts[by_doc].astype(np.int32)
        postings._bulk_doc_offsets = np.searchsorted(docs[by_doc], np.arange(n + 1)).astype(np.int64)
        postings._bulk_slots = n
        postings.version = 1
        return postings

    def renumber(self, sticker_ids: np.ndarray) -> None:
        """Give the bulk build's documents 0..n-1 these sticker ids, in order."""
        n = len(sticker_ids)
        self.sticker_of[:n] = sticker_ids
        self.doc_of = dict(zip(sticker_ids.tolist(), range(n), strict=True))

    # -- reading ----------------------------------------------------------------------------
    def postings_of(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        postings = self._postings.get(term)
        if postings is not None:
            return postings
        i = self.bulk_term.get(term)
        if i is None:
            return NO_DOCS, NO_TFS
        start, end = self.bulk_offsets[i], self.bulk_offsets[i + 1]
        return self._bulk_docs[start:end], self._bulk_tfs[start:end]

    def terms_of(self, slot: int) -> dict[str, int]:
        terms = self._doc_terms.get(slot)
        if terms is not None:
            return terms
        if slot >= self._bulk_slots:
            return {}
        start, end = self._bulk_doc_offsets[slot], self._bulk_doc_offsets[slot + 1]
        vocabulary = self._bulk_vocabulary
        return {vocabulary[t]: tf for t, tf in zip(self._bulk_doc_term_ids[start:end].tolist(),
                                                    self._bulk_doc_tfs[start:end].tolist(), strict=True)}

    # -- writing ----------------------------------------------------------------------------
    def replace(self, sticker_id: int, new: Mapping[str, int]) -> list[str]:
        """Set one sticker's document (term -> frequency; empty: it leaves); the terms whose
        postings changed."""
        slot = self.doc_of.get(sticker_id)
        if slot is None:
            if not new:
                return []
            slot = self._new_slot(sticker_id)
            old: Mapping[str, int] = {}
        else:
            old = self.terms_of(slot)
        changed = [term for term in old.keys() | new.keys() if old.get(term, 0) != new.get(term, 0)]
        for term in changed:
            self._set_tf(term, slot, new.get(term, 0))
        length = sum(new.values())
        self.total_tokens += length - int(self.doc_len[slot])
        self.doc_len[slot] = length
        self._doc_terms[slot] = dict(new)
        if not new:
            del self.doc_of[sticker_id]
            self.sticker_of[slot] = -1
            self._free.append(slot)
        self.version += 1
        return changed

    def _new_slot(self, sticker_id: int) -> int:
        if self._free:
            slot = self._free.pop()
        else:
            slot = self.slots
            self.slots += 1
            if slot >= len(self.doc_len):
                grow = len(self.doc_len)
                self.doc_len = np.concatenate([self.doc_len, np.zeros(grow)])
                self.sticker_of = np.concatenate([self.sticker_of, np.full(grow, -1, dtype=np.int64)])
        self.doc_of[sticker_id] = slot
        self.sticker_of[slot] = sticker_id
        self.doc_len[slot] = 0
        return slot

    def _set_tf(self, term: str, slot: int, tf: int) -> None:
        docs, tfs = self.postings_of(term)
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
        if len(docs) != df:
            self._move_bucket(df, len(docs))

    def _move_bucket(self, old_df: int, new_df: int) -> None:
        if old_df:
            left = self.df_count[old_df] - 1
            if left:
                self.df_count[old_df] = left
            else:
                del self.df_count[old_df]
        else:
            self.vocabulary_size += 1
        if new_df:
            self.df_count[new_df] = self.df_count.get(new_df, 0) + 1
        else:
            self.vocabulary_size -= 1


class BulkBuild:
    """Collects documents chunk by chunk as two flat integer arrays (slot, term id per token) and
    turns them into postings in one numpy pass: no Python object per token or posting, which is what
    a million-query start-up would otherwise spend its time and memory on."""

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

    def postings(self) -> Postings:
        """The postings of everything added (the build is emptied)."""
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
        postings = Postings.from_arrays(np.bincount(docs, minlength=n_docs), list(self._term_ids), offsets,
                                        posting_docs, tfs)
        postings.renumber(np.fromiter(self._slot_of, dtype=np.int64, count=n_docs))
        return postings
