"""What researchers get besides the data: the paper's statistics and its evaluation protocols.

Everything here works on a stream of (sticker, [queries]) for one language, so it serves both the
nightly export (rows straight from the database) and `sticktionary report` (any StickerQueries
CSV), and memory stays bounded whatever the size:

- Table 3 (stickers, queries, queries per sticker, tokens per query, vocabulary, frequent terms);
- the train/test split: each sticker's queries split 80/20 by a hash of their text, so the split
  does not depend on database order (a sticker with one query keeps it in train);
- Table 4's lexical inter-annotator similarity: BLEU (sacrebleu) of each query against the other
  queries of its sticker, and ROUGE-L F1 (rouge-score) over each pair of them;
- Table 6's protocol: BM25 over a corpus of stickers (their train queries), searched by the test
  queries; Recall@1/10/50 with ties counted against the target.

The two metric families cost per query, so past a cap they run on a deterministic sample (the
stickers or test queries with the smallest hashes); the output says how many were evaluated.
"""

from __future__ import annotations

import hashlib
import heapq
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from core.search import BM25Index
from core.text import tokenize

RECALL_AT = (1, 10, 50)
TEST_FRACTION = 0.2
DEFAULT_MAX_SIMILARITY_STICKERS = 1_000
DEFAULT_MAX_EVAL_QUERIES = 20_000
TOP_TERMS = 20


def stable_hash(*parts: str) -> int:
    """A hash that is the same in every process and on every machine (unlike hash())."""
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def query_keys(sticker: str, queries: Sequence[str]) -> list[int]:
    """Each query's stable hash: it orders the split and picks the evaluation sample."""
    return [stable_hash(sticker, query) for query in queries]


def split_queries(sticker: str, queries: Sequence[str], keys: Sequence[int] | None = None
                  ) -> tuple[list[int], list[int]]:
    """Positions of a sticker's queries in (train, test): 80/20, the same on every run."""
    n = len(queries)
    n_test = 0 if n < 2 else max(1, round(n * TEST_FRACTION))
    keys = keys if keys is not None else query_keys(sticker, queries)
    order = sorted(range(n), key=lambda i: (keys[i], i))
    test = sorted(order[:n_test])
    test_set = set(test)
    return [i for i in range(n) if i not in test_set], test


# ---------------------------------------------------------------------------- Table 3
@dataclass
class QueryStatistics:
    """Table 3, accumulated one sticker at a time."""

    language: str
    stickers: int = 0
    queries: int = 0
    tokens: int = 0
    term_counts: Counter = field(default_factory=Counter)

    def add(self, queries: Sequence[str], token_lists: Sequence[Sequence[str]]) -> None:
        self.stickers += 1
        self.queries += len(queries)
        for tokens in token_lists:
            self.tokens += len(tokens)
            self.term_counts.update(tokens)

    def table(self) -> dict:
        return {
            "stickers": self.stickers,
            "queries": self.queries,
            "queries_per_sticker": _ratio(self.queries, self.stickers),
            "tokens_per_query": _ratio(self.tokens, self.queries),
            "vocabulary_size": len(self.term_counts),
            "most_frequent_terms": [[term, count] for term, count in self.term_counts.most_common(TOP_TERMS)],
            "tokenizer": "jieba for Chinese runs, Unicode words otherwise (core.text.tokenize)",
        }


def _ratio(a: float, b: float, digits: int = 4) -> float | None:
    return round(a / b, digits) if b else None


# ---------------------------------------------------------------------------- samples
class BottomK:
    """The k items with the smallest keys seen so far: a deterministic, bounded sample."""

    def __init__(self, k: int) -> None:
        self.k = k
        self._heap: list[tuple[int, int, object]] = []  # (-key, tiebreak, item): a max-heap
        self.seen = 0

    def offer(self, key: int, item: object) -> None:
        self.seen += 1
        if self.k <= 0:
            return
        entry = (-key, -self.seen, item)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, entry)
        elif entry > self._heap[0]:
            heapq.heapreplace(self._heap, entry)

    def items(self) -> list:
        return [item for _, _, item in sorted(self._heap, reverse=True)]


# ---------------------------------------------------------------------------- Table 4
class _RougeTokenizer:
    """rouge-score's default tokenizer drops every non-ASCII character; ours keeps Chinese."""

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text)


def lexical_similarity(stickers: Iterable[Sequence[str]], language: str) -> dict:
    from rouge_score.rouge_scorer import RougeScorer
    from sacrebleu.metrics import BLEU

    bleu = BLEU(tokenize="zh" if language == "zh" else "13a", effective_order=True)
    rouge = RougeScorer(["rougeL"], tokenizer=_RougeTokenizer())
    bleu_sum = rouge_sum = 0.0
    bleu_n = rouge_n = used = 0
    for queries in stickers:
        if len(queries) < 2:
            continue
        used += 1
        for i, query in enumerate(queries):
            others = list(queries[:i]) + list(queries[i + 1:])
            bleu_sum += bleu.sentence_score(query, others).score
            bleu_n += 1
            for other in queries[i + 1:]:
                rouge_sum += rouge.score(other, query)["rougeL"].fmeasure
                rouge_n += 1
    return {
        "bleu": round(bleu_sum / bleu_n, 4) if bleu_n else None,
        "rouge_l_f1": round(100 * rouge_sum / rouge_n, 4) if rouge_n else None,
        "stickers_compared": used,
        "queries_compared": bleu_n,
        "pairs_compared": rouge_n,
        "protocol": "per sticker with 2+ queries: sentence BLEU (sacrebleu, effective order) of each query "
                    "against the sticker's other queries as references; ROUGE-L F1 of every pair; both "
                    "averaged over all queries / pairs, on a 0-100 scale",
    }


# ---------------------------------------------------------------------------- Table 6
class RecallEvaluation:
    """BM25 corpus of stickers (their train queries) and the test queries that search it.

    The corpus is kept as two flat integer arrays (document, term) while the stickers stream past,
    and becomes a read-only BM25Index at the end: a few bytes per token instead of Python objects.
    """

    def __init__(self, max_queries: int = DEFAULT_MAX_EVAL_QUERIES) -> None:
        self._doc_number: dict[str, int] = {}
        self._term_ids: dict[str, int] = {}
        self._token_docs = array("i")
        self._token_terms = array("i")
        self._tests = BottomK(max_queries)

    def add_sticker(self, sticker: str, train_tokens: Sequence[Sequence[str]],
                    test_queries: Sequence[tuple[int, Sequence[str]]]) -> None:
        """`test_queries`: (query key, tokens) of the sticker's test queries."""
        doc = self._doc_number.setdefault(sticker, len(self._doc_number))
        terms = self._term_ids
        for tokens in train_tokens:
            for token in tokens:
                self._token_terms.append(terms.setdefault(token, len(terms)))
            self._token_docs.extend([doc] * len(tokens))
        for key, tokens in test_queries:
            self._tests.offer(key, (doc, tuple(tokens)))

    def index(self) -> BM25Index:
        n_docs = len(self._doc_number)
        docs = np.frombuffer(self._token_docs, dtype=np.int32).astype(np.int64)
        terms = np.frombuffer(self._token_terms, dtype=np.int32).astype(np.int64)
        # One posting per (term, document) with its count, sorted by term and then document.
        pairs, tfs = np.unique(terms * max(n_docs, 1) + docs, return_counts=True)
        posting_terms, posting_docs = np.divmod(pairs, max(n_docs, 1))
        offsets = np.searchsorted(posting_terms, np.arange(len(self._term_ids) + 1))
        vocabulary = sorted(self._term_ids, key=self._term_ids.__getitem__)
        return BM25Index.from_postings(np.bincount(docs, minlength=n_docs), vocabulary, offsets, posting_docs, tfs)

    def results(self) -> dict:
        tests = self._tests.items()
        ranks = []
        if self._doc_number:
            index = self.index()
            for doc, tokens in tests:
                ranks.append(index.search(tokens, k=1, target=doc).target_rank if tokens else None)
        found = {k: sum(1 for r in ranks if r is not None and r <= k) for k in RECALL_AT}
        return {
            **{f"recall@{k}": round(found[k] / len(ranks), 4) if ranks else None for k in RECALL_AT},
            "corpus_documents": len(self._doc_number),
            "test_queries": self._tests.seen,
            "test_queries_evaluated": len(ranks),
            "protocol": "BM25 (Okapi, k1=1.5, b=0.75) over one document per sticker made of its train "
                        "queries; each test query's target rank, ties counted against the target; a "
                        "target with score 0 is a miss",
        }


# ---------------------------------------------------------------------------- one language
@dataclass
class SplitSticker:
    sticker: str
    queries: list[str]
    tokens: list[list[str]]
    train: list[int]
    test: list[int]


class LanguageReport:
    """Feed it stickers in any order; get Table 3, Table 4 and Table 6 for one language."""

    def __init__(self, language: str, *, max_similarity_stickers: int = DEFAULT_MAX_SIMILARITY_STICKERS,
                 max_eval_queries: int = DEFAULT_MAX_EVAL_QUERIES) -> None:
        self.language = language
        self.statistics = QueryStatistics(language)
        self.recall = RecallEvaluation(max_eval_queries)
        self._similarity_sample = BottomK(max_similarity_stickers)

    def add(self, sticker: str, queries: Sequence[str]) -> SplitSticker:
        queries = list(queries)
        token_lists = [tokenize(q) for q in queries]
        self.statistics.add(queries, token_lists)
        keys = query_keys(sticker, queries)
        train, test = split_queries(sticker, queries, keys)
        self.recall.add_sticker(sticker, [token_lists[i] for i in train], [(keys[i], token_lists[i]) for i in test])
        if len(queries) >= 2:
            self._similarity_sample.offer(stable_hash(sticker), tuple(queries))
        return SplitSticker(sticker, queries, token_lists, train, test)

    def statistics_table(self) -> dict:
        return self.statistics.table()

    def metrics(self) -> dict:
        similarity = lexical_similarity(self._similarity_sample.items(), self.language)
        similarity["stickers_with_2plus_queries"] = self._similarity_sample.seen
        return {"lexical_similarity": similarity, "bm25_retrieval": self.recall.results()}


__all__ = ["LanguageReport", "QueryStatistics", "RecallEvaluation", "BottomK", "lexical_similarity",
           "split_queries", "stable_hash", "RECALL_AT"]
