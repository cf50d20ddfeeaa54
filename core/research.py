"""What researchers get besides the data: the paper's statistics and its evaluation protocols.

Everything here works on a stream of stickers, each with its queries (and, where known, who wrote
them in which round) for one language, so it serves both the nightly export (rows straight from the
database) and `sticktionary report` (any StickerQueries CSV), and memory stays bounded whatever the size:

- Table 3 (stickers, queries, queries per sticker, tokens per query, vocabulary, frequent terms);
- the train/test split, leak-free: a sticker's queries are split 80/20 in *groups* that never
  straddle it — every query of one author's round is one group, and queries equal after
  normalisation ("Thumbs up" / "thumbs up") join the same group; groups are ordered by a hash of their
  text, so the split does not depend on database order (a sticker with one group keeps it in train);
- a sticker-level split (whole stickers held out, 20% by a hash of the sticker id) for training retrievers;
- Table 4's inter-annotator similarity on the paper's 0-1 scale: NLTK sentence BLEU and best-match
  ROUGE-L F1, with the project's earlier variants (sacrebleu BLEU, pairwise ROUGE-L, 0-100) kept
  under their own names (core.similarity), on every sticker unless a sample is asked for; the
  semantic figures (CS, BERTScore) in core.semantic;
- Table 6's protocol: BM25 over a corpus of stickers (their train queries), searched by the test
  queries; Recall@1/10/50 with ties against the target and in trec_eval's tie order, nDCG@10, MRR@10.

Every figure comes with its scale and its protocol in words (`figures` in each section), which
`report` prints and metrics.json carries. The two metric families cost per query: `report` computes
Table 4 on every sticker unless asked for a sample, the export on a deterministic sample of
stickers (the smallest hashes of their ids), Table 6 on a sample of test queries past a cap; the
output says how many were evaluated. On every sticker, each sticker's lexical figures are added up as
it streams past and its texts are not kept (unless the semantic figures need them).
"""

from __future__ import annotations

import hashlib
import heapq
import math
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from core.search import BM25Index
from core.similarity import AnnotatedSticker, LexicalSimilarity, figures
from core.text import normalize_query, tokenize

RECALL_AT = (1, 10, 50)
RANK_CUTOFF = 10  # nDCG@10 and MRR@10
TEST_FRACTION = 0.2
STICKER_TEST_PERCENT = 20
DEFAULT_MAX_EVAL_QUERIES = 20_000
TOP_TERMS = 20

SPLIT_PROTOCOL = (
    "query-level 80/20 split per sticker, in groups that never straddle it: all queries of one author's "
    "labeler round form one group, and queries equal after normalisation (NFKC, case, spacing, edge "
    "punctuation) join the same group; groups are taken into test in the order of a stable hash of their "
    "text while that brings the sticker's test share closer to 20%, always leaving train non-empty "
    "(a sticker with a single group keeps it in train). Without authors (a StickerQueries CSV) only the "
    "normalisation groups apply.")
STICKER_SPLIT_PROTOCOL = (
    f"sticker-level split: a sticker and all its queries are in test when a stable hash of its id "
    f"falls in the lowest {STICKER_TEST_PERCENT}%, else in train; no query text is in any corpus document")


def stable_hash(*parts: str) -> int:
    """A hash that is the same in every process and on every machine (unlike hash())."""
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def query_keys(sticker: str, queries: Sequence[str]) -> list[int]:
    """Each query's stable hash: it orders the split and picks the evaluation sample."""
    return [stable_hash(sticker, query) for query in queries]


def split_groups(queries: Sequence[str], units: Sequence[object | None] | None = None,
                 normalized: Sequence[str] | None = None) -> list[int]:
    """A group number per query: same unit (author and round) or same normalised text, same group.
    `normalized`: the queries' normal forms where the caller has them (the database stores them)."""
    forms = normalized if normalized is not None else [normalize_query(q) for q in queries]
    group_of_form: dict[str, int] = {}
    group_of_unit: dict[object, int] = {}
    parent = list(range(len(queries)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, form in enumerate(forms):
        j = group_of_form.setdefault(form, i)
        if j != i:
            parent[find(i)] = find(j)
        unit = units[i] if units is not None else None
        if unit is not None:
            j = group_of_unit.setdefault(unit, i)
            if j != i:
                parent[find(i)] = find(j)
    return [find(i) for i in range(len(queries))]


def split_queries(sticker: str, queries: Sequence[str], keys: Sequence[int] | None = None,
                  units: Sequence[object | None] | None = None, normalized: Sequence[str] | None = None
                  ) -> tuple[list[int], list[int]]:
    """Positions of a sticker's queries in (train, test): about 80/20, grouped, the same on every run."""
    n = len(queries)
    if n < 2:
        return list(range(n)), []
    keys = keys if keys is not None else query_keys(sticker, queries)
    members: dict[int, list[int]] = {}
    for i, group in enumerate(split_groups(queries, units, normalized)):
        members.setdefault(group, []).append(i)
    if len(members) < 2:
        return list(range(n)), []
    target = max(1, round(n * TEST_FRACTION))
    test: list[int] = []
    # A group's key is its smallest query hash: independent of the order the queries come in.
    for group in sorted(members.values(), key=lambda m: min(keys[i] for i in m)):
        size = len(test) + len(group)
        if abs(size - target) < abs(len(test) - target) and size < n:
            test.extend(group)
    test_set = set(test)
    return [i for i in range(n) if i not in test_set], sorted(test)


def sticker_in_test(sticker: str) -> bool:
    """The sticker-level split (beir-stickers/): whole stickers held out."""
    return stable_hash("sticker-split", sticker) % 100 < STICKER_TEST_PERCENT


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


# ---------------------------------------------------------------------------- Table 6
RETRIEVAL_FIGURES = {
    **{f"recall@{k}": ("0-1", f"share of test queries whose target sticker ranks in the top {k}, every "
                              f"sticker tied with the target counted ahead of it") for k in RECALL_AT},
    **{f"recall@{k}_trec": ("0-1", f"share of test queries whose target ranks in the top {k} in trec_eval's "
                                   f"order (score descending, ties by document id descending), as pytrec_eval "
                                   f"and BEIR compute it") for k in RECALL_AT},
    f"ndcg@{RANK_CUTOFF}": ("0-1", f"nDCG@{RANK_CUTOFF} with the one relevant sticker per query (gain 1), "
                                   f"trec_eval's tie order: 1/log2(rank+1) when rank <= {RANK_CUTOFF}, else 0"),
    f"mrr@{RANK_CUTOFF}": ("0-1", f"mean reciprocal rank cut at {RANK_CUTOFF}, trec_eval's tie order: 1/rank "
                                  f"when rank <= {RANK_CUTOFF}, else 0"),
}
RETRIEVAL_PROTOCOL = ("BM25 (Okapi, k1=1.5, b=0.75) over one document per sticker made of its train queries, "
                      "searched by each test query of the query-level split; a target with score 0 is a miss")


def ranks_of_target(scores: np.ndarray, target: int, id_order: np.ndarray) -> tuple[int, int] | None:
    """The target's rank with ties counted against it, and its rank in trec_eval's order (score
    descending, then document id descending). None when the target scored 0 (not retrieved).
    `id_order[d]` is document d's position when the document ids are sorted."""
    score = scores[target]
    if score <= 0:
        return None
    above = int(np.count_nonzero(scores > score))
    tied = np.flatnonzero(scores == score)
    return above + len(tied), above + 1 + int(np.count_nonzero(id_order[tied] > id_order[target]))


def rank_metrics(pessimistic: Sequence[int | None], trec: Sequence[int | None]) -> dict:
    """Recall@k (both tie rules), nDCG@10 and MRR@10 from the targets' ranks (None: a miss)."""
    n = len(trec)
    if not n:
        return dict.fromkeys(RETRIEVAL_FIGURES)
    result = {}
    for k in RECALL_AT:
        result[f"recall@{k}"] = sum(1 for r in pessimistic if r is not None and r <= k) / n
    for k in RECALL_AT:
        result[f"recall@{k}_trec"] = sum(1 for r in trec if r is not None and r <= k) / n
    hits = [r for r in trec if r is not None and r <= RANK_CUTOFF]
    result[f"ndcg@{RANK_CUTOFF}"] = sum(1 / math.log2(r + 1) for r in hits) / n
    result[f"mrr@{RANK_CUTOFF}"] = sum(1 / r for r in hits) / n
    return {name: round(value, 4) for name, value in result.items()}


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
        n_docs = max(len(self._doc_number), 1)
        docs = np.frombuffer(self._token_docs, dtype=np.int32)
        # One posting per (term, document) with its count, sorted by term and then document: the pairs
        # as one int64 key, sorted in place and counted by run, so that a million queries' tokens need
        # about one key array and a flag array at the peak (np.unique would make several copies).
        keys = np.frombuffer(self._token_terms, dtype=np.int32).astype(np.int64)
        keys *= n_docs
        keys += docs
        keys.sort()
        new_run = np.empty(len(keys), dtype=bool)
        new_run[:1] = True
        np.not_equal(keys[1:], keys[:-1], out=new_run[1:])
        starts = np.flatnonzero(new_run)
        del new_run
        tfs = np.diff(starts, append=len(keys))
        pairs = keys[starts]
        del keys, starts
        offsets = np.searchsorted(pairs, np.arange(len(self._term_ids) + 1, dtype=np.int64) * n_docs)
        pairs %= n_docs  # the document of each posting
        vocabulary = sorted(self._term_ids, key=self._term_ids.__getitem__)
        return BM25Index.from_postings(np.bincount(docs, minlength=len(self._doc_number)), vocabulary, offsets,
                                       pairs, tfs)

    def ranks(self) -> tuple[list[int | None], list[int | None]]:
        """Each evaluated test query's target rank: (ties against the target, trec_eval's order)."""
        pessimistic: list[int | None] = []
        trec: list[int | None] = []
        tests = self._tests.items()
        if not self._doc_number or not tests:
            return pessimistic, trec
        index = self.index()
        ids = list(self._doc_number)  # document number -> sticker id
        id_order = np.empty(len(ids), dtype=np.int64)
        id_order[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids))
        for doc, tokens in tests:
            ranks = ranks_of_target(index.scores(tokens), doc, id_order) if tokens else None
            pessimistic.append(ranks[0] if ranks else None)
            trec.append(ranks[1] if ranks else None)
        return pessimistic, trec

    def results(self) -> dict:
        pessimistic, trec = self.ranks()
        return {
            **rank_metrics(pessimistic, trec),
            "corpus_documents": len(self._doc_number),
            "test_queries": self._tests.seen,
            "test_queries_evaluated": len(trec),
            "protocol": RETRIEVAL_PROTOCOL,
            "figures": figures(RETRIEVAL_FIGURES),
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
    """Feed it stickers in any order; get Table 3, Table 4 and Table 6 for one language.

    `authors` (per query, None for a seed) keeps inter-annotator pairs between different people;
    `units` (per query: author and round) keeps a round on one side of the split.
    `max_similarity_stickers`: Table 4 on a deterministic sample of that many stickers (None: every
    sticker); `keep_texts`: keep the compared stickers' texts for the semantic figures;
    `variants`: the earlier lexical variants too (sacrebleu)."""

    def __init__(self, language: str, *, max_similarity_stickers: int | None = None,
                 max_eval_queries: int = DEFAULT_MAX_EVAL_QUERIES, keep_texts: bool = True,
                 variants: bool = True) -> None:
        self.language = language
        self.statistics = QueryStatistics(language)
        self.recall = RecallEvaluation(max_eval_queries)
        self.sample_size = max_similarity_stickers
        self.keep_texts = keep_texts
        self.variants = variants
        self._lexical = LexicalSimilarity(language, variants=variants)
        self._similarity_sample = BottomK(max_similarity_stickers or 0)
        self._texts: list[AnnotatedSticker] = []  # every compared sticker's, when kept and not sampling
        self._with_pairs = 0
        self.split_counts = Counter()

    def add(self, sticker: str, queries: Sequence[str], *, authors: Sequence[object | None] | None = None,
            units: Sequence[object | None] | None = None, normalized: Sequence[str] | None = None,
            tokens: Sequence[list[str]] | None = None) -> SplitSticker:
        """`tokens`: each query's search tokens when already known (the game stores them), else tokenized here."""
        queries = list(queries)
        token_lists = list(tokens) if tokens is not None else [tokenize(q) for q in queries]
        self.statistics.add(queries, token_lists)
        keys = query_keys(sticker, queries)
        train, test = split_queries(sticker, queries, keys, units, normalized)
        self.split_counts["train"] += len(train)
        self.split_counts["test"] += len(test)
        self.recall.add_sticker(sticker, [token_lists[i] for i in train], [(keys[i], token_lists[i]) for i in test])
        if len(queries) >= 2:
            self._with_pairs += 1
            annotated = AnnotatedSticker(tuple(queries), tuple(authors) if authors is not None else None)
            if self.sample_size is None:
                self._lexical.add(annotated)
                if self.keep_texts:
                    self._texts.append(annotated)
            else:
                # The sample's texts are kept (a thousand stickers: about a megabyte) and scored once at
                # the end: scoring each sticker as it enters the sample would score k(1 + ln(n/k)) of them.
                self._similarity_sample.offer(stable_hash(sticker), annotated)
        return SplitSticker(sticker, queries, token_lists, train, test)

    def statistics_table(self) -> dict:
        return self.statistics.table()

    def similarity_sample(self) -> list[AnnotatedSticker]:
        """The compared stickers with their texts (empty unless `keep_texts`)."""
        if self.sample_size is None:
            return list(self._texts)
        return self._similarity_sample.items() if self.keep_texts else []

    def lexical(self) -> dict:
        if self.sample_size is None:
            result = self._lexical.result()
            scale = "every sticker with 2 or more queries"
        else:
            combined = LexicalSimilarity(self.language, variants=self.variants)
            for annotated in self._similarity_sample.items():
                combined.add(annotated)
            result = combined.result()
            scale = "every sticker with 2 or more queries" if self._with_pairs <= self.sample_size else (
                f"a deterministic sample of at most {self.sample_size} stickers with 2 or more queries (the "
                f"smallest stable hashes of their ids)")
        return {**result, "stickers_with_2plus_queries": self._with_pairs, "scale": scale}

    def metrics(self, semantic_model: str | None = None) -> dict:
        """`semantic_model`: a model name or local path for CS and BERTScore; None leaves them out."""
        from core.semantic import semantic_similarity  # its imports are lazy too; only when asked for

        similarity = self.lexical()
        result = {"split": {"train_queries": self.split_counts["train"], "test_queries": self.split_counts["test"],
                            "protocol": SPLIT_PROTOCOL},
                  "lexical_similarity": similarity}
        if semantic_model is not None:
            result["semantic_similarity"] = semantic_similarity(self.similarity_sample(), self.language,
                                                                semantic_model)
        result["bm25_retrieval"] = self.recall.results()
        return result


__all__ = ["LanguageReport", "QueryStatistics", "RecallEvaluation", "BottomK", "split_queries", "split_groups",
           "sticker_in_test", "stable_hash", "rank_metrics", "ranks_of_target", "RECALL_AT", "SPLIT_PROTOCOL",
           "STICKER_SPLIT_PROTOCOL"]
