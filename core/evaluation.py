"""`sticktionary evaluate EXPORT`: humans against models on the same retrieval tasks.

Each model answers every grid the human retrievers answered, from the queries they were shown:
it ranks the grid's candidates, and separately the whole corpus of the language. A sticker's document
is the text of its usable queries (queries.parquet); the target's document leaves out the queries the
task showed (leave-task-out: no model reads the answer it is asked for). Ranks are pessimistic: every
candidate tied with the target counts ahead of it, so a model with no evidence ranks it last.

    Recall@1, Recall@3 over the grid   humans: the target their first pick / among their picks
    MAP over the grid                  one relevant candidate: the mean reciprocal rank
    nDCG@10 over the full corpus       the models only (humans saw the grid alone)

Models: BM25 (k1=1.5, b=0.75, idf ln(1 + (N - df + 0.5) / (df + 0.5)), the statistics recomputed
without the left-out queries), and with the `semantic` extra a dense model: the cosine between the mean
embedding of the shown queries and the mean embedding of a sticker's queries.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.partner_figures import compare
from core.text import tokenize
from core.vocabulary import LANGUAGES

K1, B = 1.5, 0.75
GRID_KS = (1, 3)


@dataclass
class Task:
    task_id: int
    target: str
    candidates: list[str]
    hit_rank: int | None
    query_ids: list[int]
    query_texts: list[str]
    retriever_kind: str
    round_id: str | None = None  # pseudonymous; None for tasks without a label round (gold)
    is_gold: bool = False


@dataclass
class Corpus:
    """One language's documents: each sticker's usable queries (ids and texts)."""

    stickers: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    queries: dict[int, tuple[int, str]] = field(default_factory=dict)  # query id -> (document, text)
    sizes: Counter = field(default_factory=Counter)  # document -> queries

    def add(self, query_id: int, sticker: str, text: str) -> None:
        if sticker not in self.index:
            self.index[sticker] = len(self.stickers)
            self.stickers.append(sticker)
        self.queries[query_id] = (self.index[sticker], text)
        self.sizes[self.index[sticker]] += 1

    def without_text(self, task: Task) -> bool:
        """The target has no query left once the task's own are left out."""
        return task.target not in self.index or len(self.left_out(task)) == self.sizes[self.index[task.target]]

    def left_out(self, task: Task) -> list[int]:
        """The task's queries that are in its target's document."""
        target = self.index.get(task.target)
        return [q for q in task.query_ids if q in self.queries and self.queries[q][0] == target]


def pessimistic_rank(scores: np.ndarray, target: int | None) -> int | None:
    """1 + the documents scoring at least the target's, other than itself; None without a target."""
    if target is None:
        return None
    return int(np.count_nonzero(scores >= scores[target]))


class Bm25:
    name = "bm25"

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        n = len(corpus.stickers)
        self.tf: list[Counter] = [Counter() for _ in range(n)]
        self.query_tokens: dict[int, list[str]] = {}
        for query_id, (document, text) in corpus.queries.items():
            tokens = tokenize(text)
            self.query_tokens[query_id] = tokens
            self.tf[document].update(tokens)
        self.lengths = np.array([sum(c.values()) for c in self.tf], dtype=float)
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        grouped: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for document, counts in enumerate(self.tf):
            for term, count in counts.items():
                grouped[term].append((document, count))
        for term, pairs in grouped.items():
            docs, tfs = zip(*pairs, strict=True)
            self.postings[term] = (np.array(docs), np.array(tfs, dtype=float))

    def scores(self, task: Task) -> tuple[np.ndarray, int | None]:
        corpus = self.corpus
        n = len(corpus.stickers)
        target = corpus.index.get(task.target)
        removed: Counter = Counter()
        for query_id in corpus.left_out(task):
            removed.update(self.query_tokens[query_id])
        lengths = self.lengths.copy()
        if target is not None:
            lengths[target] -= sum(removed.values())
        average = lengths.sum() / n if n and lengths.sum() else 1.0
        norm = K1 * (1 - B + B * lengths / average)
        scores = np.zeros(n)
        for term in (t for text in task.query_texts for t in tokenize(text)):
            if term not in self.postings:
                continue
            docs, tfs = self.postings[term]
            tfs = tfs.copy()
            df = len(docs)
            if target is not None and removed[term]:
                at = np.flatnonzero(docs == target)
                tfs[at] -= removed[term]
                if tfs[at].sum() <= 0:
                    df -= 1
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            scores[docs] += idf * tfs * (K1 + 1) / (tfs + norm[docs])
        return scores, target


class Dense:
    name = "dense"

    def __init__(self, corpus: Corpus, embed: Callable[[Sequence[str]], np.ndarray], model: str) -> None:
        self.corpus = corpus
        self.embed = embed
        self.model = model
        ids = list(corpus.queries)
        vectors = embed([corpus.queries[q][1] for q in ids]) if ids else np.zeros((0, 1))
        self.vector = {q: vectors[i] for i, q in enumerate(ids)}
        n, width = len(corpus.stickers), vectors.shape[1]
        self.sums = np.zeros((n, width))
        self.counts = np.zeros(n)
        for i, q in enumerate(ids):
            self.sums[corpus.queries[q][0]] += vectors[i]
            self.counts[corpus.queries[q][0]] += 1
        self.cache: dict[str, np.ndarray] = {}

    def _query(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            for text, vector in zip(missing, self.embed(missing), strict=True):
                self.cache[text] = vector
        mean = np.mean([self.cache[t] for t in texts], axis=0)
        return mean / (np.linalg.norm(mean) or 1.0)

    def scores(self, task: Task) -> tuple[np.ndarray, int | None]:
        corpus = self.corpus
        target = corpus.index.get(task.target)
        sums, counts = self.sums, self.counts
        if target is not None:
            sums, counts = sums.copy(), counts.copy()
            for query_id in corpus.left_out(task):
                sums[target] -= self.vector[query_id]
                counts[target] -= 1
        norms = np.linalg.norm(sums, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            scores = (sums @ self._query(task.query_texts)) / norms
        scores[(counts <= 0) | (norms == 0)] = -np.inf  # no text left: no evidence for it
        return scores, target


def grid_rank(scores: np.ndarray, corpus: Corpus, task: Task) -> int:
    """The target's pessimistic rank among the grid's candidates (a candidate without a document scores
    as one with no evidence)."""
    def score(sticker: str) -> float:
        at = corpus.index.get(sticker)
        return -np.inf if at is None else float(scores[at])

    target = score(task.target)
    return 1 + sum(1 for s in task.candidates if s != task.target and score(s) >= target)


class Tally:
    def __init__(self) -> None:
        self.ranks: list[int | None] = []

    def add(self, rank: int | None) -> None:
        self.ranks.append(rank)

    def grid(self) -> dict:
        n = len(self.ranks)
        if not n:
            return {"tasks": 0}
        result = {"tasks": n}
        for k in GRID_KS:
            result[f"recall@{k}"] = round(sum(1 for r in self.ranks if r is not None and r <= k) / n, 4)
        result["map"] = round(sum(1 / r for r in self.ranks if r is not None) / n, 4)
        return result

    def full(self, documents: int) -> dict:
        n = len(self.ranks)
        if not n:
            return {"tasks": 0, "corpus_documents": documents}
        ndcg = sum(1 / math.log2(r + 1) for r in self.ranks if r is not None and r <= 10) / n
        recall = sum(1 for r in self.ranks if r is not None and r <= 10) / n
        return {"tasks": n, "corpus_documents": documents, "ndcg@10": round(ndcg, 4), "recall@10": round(recall, 4)}


def load_export(folder: Path) -> tuple[dict[str, list[Task]], dict[str, Corpus]]:
    import pyarrow.parquet as pq

    from core.export_layout import data_file

    tasks: dict[str, list[Task]] = {language: [] for language in LANGUAGES}
    judgments = pq.read_table(folder / data_file("judgments", "train"),
                              columns=["task_id", "language", "target", "candidates", "hit_rank", "query_ids",
                                       "query_texts", "retriever_kind", "round_id", "is_gold", "answered_at"])
    # In answer order, so that a round's first human answer comes first (humans_vs_partners).
    for row in sorted(judgments.to_pylist(), key=lambda r: (r["answered_at"] is None, r["answered_at"], r["task_id"])):
        tasks.setdefault(row["language"], []).append(Task(
            row["task_id"], row["target"], row["candidates"], row["hit_rank"], row["query_ids"], row["query_texts"],
            row["retriever_kind"], row["round_id"], bool(row["is_gold"])))
    corpora = {language: Corpus() for language in tasks}
    source = pq.ParquetFile(str(folder / "queries.parquet"))
    for batch in source.iter_batches(columns=["query_id", "language", "sticker_id", "text"]):
        for query_id, language, sticker, text in zip(*(batch.column(i).to_pylist() for i in range(4)), strict=True):
            corpora.setdefault(language, Corpus()).add(query_id, sticker, text)
    return tasks, corpora


def same_round_pairs(tasks: list[Task]) -> list[tuple[int | None, int | None]]:
    """(first human rank, partner model rank) of each round a person and a partner both answered, as the
    dashboard counts them (core/partner_figures.py); `tasks` in answer order."""
    human: dict[str, int | None] = {}
    model: dict[str, int | None] = {}
    for task in tasks:
        if task.round_id is None or task.is_gold:
            continue
        (model if task.retriever_kind == "model" else human).setdefault(task.round_id, task.hit_rank)
    return [(human[r], rank) for r, rank in sorted(model.items()) if r in human]


def dense_embedder(model: str, language: str) -> Callable[[Sequence[str]], np.ndarray]:
    """Raises core.semantic.SemanticUnavailable without the extra or the model."""
    from core.semantic import loaded_scorer

    scorer = loaded_scorer(model, language)
    return lambda texts: scorer.embed(list(texts)).cpu().numpy() if texts else np.zeros((0, 1))


def evaluate_export(folder: Path, semantic_models: dict[str, str | None] | None = None) -> dict:
    """Per language: the retrievers' and each model's grid figures over the humans' tasks, and each model's
    full-corpus figures. `semantic_models`: language -> model for the dense model (None: BM25 only)."""
    from core.semantic import SemanticUnavailable

    folder = Path(folder)
    tasks, corpora = load_export(folder)
    result = {"export": str(folder), "protocol": __doc__.split("\n\n")[1].replace("\n", " "), "languages": {}}
    for language in LANGUAGES:
        mine, corpus = tasks.get(language, []), corpora.get(language, Corpus())
        humans = [t for t in mine if t.retriever_kind == "human"]
        retrievers: dict[str, Tally] = defaultdict(Tally)
        for task in mine:
            retrievers[task.retriever_kind].add(task.hit_rank)
        models = [Bm25(corpus)]
        section = {"tasks": len(mine), "human_tasks": len(humans),
                   "grid_size": Counter(len(t.candidates) for t in mine).most_common(1)[0][0] if mine else None,
                   "targets_without_text": sum(1 for t in humans if corpus.without_text(t)),
                   "retrievers": {kind: tally.grid() for kind, tally in sorted(retrievers.items())},
                   "humans_vs_partners": compare(same_round_pairs(mine)), "models": {}}
        model = (semantic_models or {}).get(language)
        if model:
            try:
                models.append(Dense(corpus, dense_embedder(model, language), model))
            except SemanticUnavailable as error:
                section["models"]["dense"] = {"unavailable": str(error)}
        elif semantic_models is not None:
            section["models"]["dense"] = {"unavailable": "no model (install the semantic extra and give --model)"}
        for scorer in models:
            grid, full = Tally(), Tally()
            for task in humans:
                scores, target = scorer.scores(task)
                grid.add(grid_rank(scores, corpus, task))
                full.add(pessimistic_rank(scores, target))
            section["models"][scorer.name] = {"grid": grid.grid(), "full_corpus": full.full(len(corpus.stickers))}
            if isinstance(scorer, Dense):
                section["models"][scorer.name]["model"] = scorer.model
        result["languages"][language] = section
    return result
