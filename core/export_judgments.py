"""The game's relevance judgments in the research export: every answered retrieval task, human and gold.

    judgments.jsonl, data/judgments/train.parquet   one row per answered task (the `judgments` config)
    judgments/<lang>/qrels.tsv, qrels.trec           graded qrels: the target graded by the rank it was found
                                                     at (1st: 3, 2nd: 2, 3rd: 1), a miss kept as a judged 0
    judgments/<lang>/queries.jsonl                   BEIR queries: one per task, the queries shown, joined
    data/judgments/negatives.parquet                 explicit negatives: every candidate seen and not picked,
                                                     and every candidate picked wrongly (human confusions);
                                                     eight rows a task, so Parquet only (judgments.jsonl has
                                                     the grids and picks they come from)

A task is left out when its retriever, its labeler or the author of a query it showed withdrew consent,
and when it showed a seed query in an export without seeds. Tasks are read in id ranges (keyset pages),
so memory does not grow with the number of tasks.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import NamedTuple

import numpy as np
import orjson
import pyarrow as pa
from sqlalchemy import Engine, Text, cast, select
from sqlalchemy.orm import aliased
from sqlmodel import col

from core.export_layout import data_file
from core.vocabulary import LANGUAGES
from storage.arrow_columns import column, integers
from storage.db import utc_truncated
from storage.export_files import JsonLines, ParquetRecords, Tsv
from storage.models import LabelRound, Player, Query, QuerySource, RetrievalTask, Sticker, TaskQuery, TaskStatus
from storage.typed_jsonl import TypedJsonLines

JUDGMENT_SCHEMA = pa.schema([
    ("task_id", pa.int64()),
    ("language", pa.string()),
    ("setting", pa.string()),
    ("is_gold", pa.bool_()),
    ("target", pa.string()),
    ("candidates", pa.list_(pa.string())),
    ("picks", pa.list_(pa.string())),
    ("hit_rank", pa.int32()),
    ("query_ids", pa.list_(pa.int64())),
    ("query_texts", pa.list_(pa.string())),
    ("retriever", pa.string()),
    ("retriever_kind", pa.string()),
    ("labeler", pa.string()),
    ("round_id", pa.string()),
    ("answered_at", pa.timestamp("us", tz="UTC")),
])
JUDGMENT_FIELDS = tuple(JUDGMENT_SCHEMA.names)
ANSWERED_AT = JUDGMENT_SCHEMA.field("answered_at").type
JUDGMENT_FIELD_DOCS = {
    "task_id": "the retrieval task's id in this database (stable across exports)",
    "language": "en or zh",
    "setting": "private (one retriever in a private chat) or group (a race in a group chat)",
    "is_gold": "a known-answer task built from validated queries (checks the retriever, not a labeler)",
    "target": "the sticker to find (sticker id as in StickerQueries)",
    "candidates": "the grid shown, in grid order: the target, BM25 look-alikes and random stickers",
    "picks": "the stickers the retriever picked, in rank order (at most 3)",
    "hit_rank": "the rank of the target among the picks (1-3), null for a miss",
    "query_ids": "the queries shown (query_id of the `all` config)",
    "query_texts": "the same queries' texts as the retriever saw them",
    "retriever": "keyed pseudonym of the retriever (the same pseudonym as `annotator` for the same person)",
    "retriever_kind": "human, or model (a partner bot)",
    "labeler": "keyed pseudonym of the labeler who wrote the queries; null for gold tasks",
    "round_id": "keyed pseudonym of the labeler round (`label_round` of the query records); null for gold tasks",
    "answered_at": "when the retriever answered (UTC, truncated)",
}
NEGATIVE_SCHEMA = pa.schema([
    ("task_id", pa.int64()),
    ("language", pa.string()),
    ("target", pa.string()),
    ("sticker_id", pa.string()),
    ("kind", pa.string()),
    ("pick_rank", pa.int32()),
])
NEGATIVE_KINDS = column(["unpicked", "picked"], pa.string())  # taken by (pick rank > 0)
GRADED_QRELS_SCHEMA = pa.schema([("query-id", pa.string()), ("corpus-id", pa.string()), ("score", pa.int32())])
GRADE_OF_RANK = {1: 3, 2: 2, 3: 1}
JUDGMENTS_FILE = "judgments.jsonl"
PAGE = 2000


def grade(hit_rank: int | None) -> int:
    return GRADE_OF_RANK.get(hit_rank, 0) if hit_rank is not None else 0


def task_query_id(task_id: int) -> str:
    return f"t{task_id}"


def judgment_files() -> dict[str, dict[str, str]]:
    """Config name -> parquet files, for the dataset card (split -> path)."""
    return {"judgments": {"train": data_file("judgments", "train")},
            "judgments_negatives": {"train": data_file("judgments", "negatives")},
            "judgments_qrels": {language: data_file("judgments", language, "qrels") for language in LANGUAGES}}


def _json_text(json_column):
    """A JSON column read as its text, parsed by orjson: several times faster than the json module that
    SQLAlchemy's JSON type calls per row, and the same on both databases (PostgreSQL would parse it first)."""
    return cast(json_column, Text)


class _Task(NamedTuple):
    """A row of the judgments' page statement, its JSON lists parsed."""

    id: int
    language: str
    setting: str
    is_gold: bool
    sticker_id: int
    candidate_ids: list[int]
    picks: list[int]
    hit_rank: int | None
    query_ids: list[int]
    retriever_id: int
    kind: str
    player_id: int | None
    label_round_id: int | None
    answered_at: datetime | None


class StickerKeys:
    """Every sticker's key by id, as Arrow and numpy arrays. It grows with the archive, but by about 35
    bytes a sticker (35 MB for a million), where looking up a page's ten stickers a task in the
    database, page by page, had cost more than writing the page."""

    def __init__(self, connection) -> None:
        ids, keys = [], []
        result = connection.execute(select(Sticker.id, Sticker.key).order_by(Sticker.id)
                                    .execution_options(yield_per=50_000))
        for chunk in result.partitions():
            ids.append(np.fromiter((row[0] for row in chunk), dtype=np.int64, count=len(chunk)))
            keys.append(column([row[1] for row in chunk], pa.string()))
        self.ids = np.concatenate(ids) if ids else np.empty(0, dtype=np.int64)
        self.keys = pa.concat_arrays(keys) if keys else column([], pa.string())

    def take(self, sticker_ids: np.ndarray) -> pa.Array:
        positions = np.searchsorted(self.ids, sticker_ids)
        if len(sticker_ids) and (positions.max() >= len(self.ids) or (self.ids[positions] != sticker_ids).any()):
            raise LookupError("a retrieval task names a sticker that is not in the database")
        return self.keys.take(integers(positions))


class _Lists:
    """A page's lists of integers (grids, picks, queries shown) flattened: values and offsets."""

    def __init__(self, lists: list[list[int]]) -> None:
        self.offsets = np.zeros(len(lists) + 1, dtype=np.int32)
        np.cumsum(np.fromiter(map(len, lists), dtype=np.int32, count=len(lists)), out=self.offsets[1:])
        self.values = np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=int(self.offsets[-1]))

    def parents(self) -> np.ndarray:
        """Each value's list."""
        return np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))

    def arrow(self, values: pa.Array) -> pa.ListArray:
        return pa.ListArray.from_arrays(integers(self.offsets, pa.int32()), values)

    def split(self, flat: list) -> list[list]:
        bounds = self.offsets.tolist()
        return [flat[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]


class GridFigures:
    """Recall_n@K and MAP over the candidate sets (DSTC10-MOD's protocol: one relevant among n shown),
    and nDCG@10 of the same rankings; a pick list beyond its last pick counts as not found."""

    def __init__(self) -> None:
        self.tasks = 0
        self.found_at: Counter = Counter()
        self.grid_sizes: Counter = Counter()
        self.reciprocal = 0.0
        self.ndcg = 0.0

    def add(self, rank: int | None, grid_size: int) -> None:
        self.tasks += 1
        self.grid_sizes[grid_size] += 1
        if rank is not None:
            self.found_at[rank] += 1
            self.reciprocal += 1 / rank
            self.ndcg += 1 / math.log2(rank + 1) if rank <= 10 else 0.0

    def results(self, ks=(1, 2, 3)) -> dict:
        if not self.tasks:
            return {"tasks": 0}
        n = self.grid_sizes.most_common(1)[0][0]
        result = {"tasks": self.tasks, "grid_size": n}
        for k in ks:
            found = sum(count for rank, count in self.found_at.items() if rank <= k)
            result[f"recall_{n}@{k}"] = round(found / self.tasks, 4)
        result["map"] = round(self.reciprocal / self.tasks, 4)
        result["ndcg@10"] = round(self.ndcg / self.tasks, 4)
        return result


def grid_figures_of(judgments: Path) -> dict[str, dict[str, dict]]:
    """GridFigures per language and retriever kind of an export's judgments (its folder, its parquet
    file or judgments.jsonl): `sticktionary report --judgments`, from the released files alone."""
    import json

    import pyarrow.parquet as pq

    judgments = Path(judgments)
    if judgments.is_dir():
        judgments = judgments / data_file("judgments", "train")
    columns = ["language", "retriever_kind", "hit_rank", "candidates"]
    if judgments.suffix == ".jsonl":
        with judgments.open(encoding="utf-8") as lines:
            rows = [{name: row.get(name) for name in columns} for row in map(json.loads, filter(str.strip, lines))]
    else:
        rows = pq.read_table(judgments, columns=columns).to_pylist()
    figures: dict[tuple[str, str], GridFigures] = {}
    for row in rows:
        figures.setdefault((row["language"], row["retriever_kind"]), GridFigures()).add(row["hit_rank"],
                                                                                        len(row["candidates"]))
    return {language: {kind: figures[language, kind].results() for lang, kind in sorted(figures) if lang == language}
            for language in sorted({language for language, _ in figures})}


class JudgmentsWriter:
    """Writes every judgment file of the export; `figures` holds the grid figures per language and kind."""

    def __init__(self, folder: Path, settings, pseudonym) -> None:
        self.folder = folder
        self.settings = settings
        self.pseudonym = pseudonym  # (kind, id) -> keyed pseudonym
        self.jsonl = TypedJsonLines(folder / JUDGMENTS_FILE)
        self.parquet = ParquetRecords(folder / data_file("judgments", "train"), JUDGMENT_SCHEMA)
        self.negatives = ParquetRecords(folder / data_file("judgments", "negatives"), NEGATIVE_SCHEMA)
        self.qrels, self.trec, self.queries, self.qrels_parquet = {}, {}, {}, {}
        for language in LANGUAGES:
            base = folder / "judgments" / language
            self.qrels[language] = Tsv(base / "qrels.tsv", ("query-id", "corpus-id", "score"))
            self.trec[language] = (base / "qrels.trec").open("w", encoding="utf-8", newline="\n")
            self.queries[language] = JsonLines(base / "queries.jsonl")
            self.qrels_parquet[language] = ParquetRecords(folder / data_file("judgments", language, "qrels"),
                                                          GRADED_QRELS_SCHEMA)
        self.figures: dict[tuple[str, str], GridFigures] = {}
        self.keys: StickerKeys | None = None

    def write_all(self, db: Engine) -> int:
        last = 0
        with db.connect() as connection:
            self.keys = StickerKeys(connection)
            while True:
                page = connection.execute(self._page_statement(db, last)).all()
                if not page:
                    break
                last = page[-1].id
                self._write_page(connection, page)
        return self.jsonl.rows

    def _page_statement(self, db: Engine, after: int):
        retriever = aliased(Player)
        labeler = aliased(Player)
        return (
            select(RetrievalTask.id, RetrievalTask.language, RetrievalTask.setting, RetrievalTask.is_gold,
                   RetrievalTask.sticker_id, _json_text(RetrievalTask.candidate_ids), _json_text(RetrievalTask.picks),
                   RetrievalTask.hit_rank, _json_text(RetrievalTask.query_ids), RetrievalTask.retriever_id,
                   retriever.kind, LabelRound.player_id, RetrievalTask.label_round_id,
                   utc_truncated(db, RetrievalTask.answered_at, self.settings.privacy.export_time_resolution))
            .join(retriever, retriever.id == RetrievalTask.retriever_id)
            .outerjoin(LabelRound, LabelRound.id == RetrievalTask.label_round_id)
            .outerjoin(labeler, labeler.id == LabelRound.player_id)
            .where(RetrievalTask.status == TaskStatus.ANSWERED, RetrievalTask.id > after,
                   col(retriever.consent_withdrawn_at).is_(None), col(labeler.consent_withdrawn_at).is_(None))
            .order_by(RetrievalTask.id).limit(PAGE)
        )

    def _shown_queries(self, connection, page) -> dict[int, tuple[str, bool]]:
        """query id -> (text as shown, exportable) for the page's tasks: not exportable when its author
        withdrew consent, or when it is a seed and the export leaves seeds out. One read through the
        tasks' TaskQuery rows; a query a task names without one (none expected) is looked up by id."""
        without_seeds = self.settings.exports.export_without_seeds
        found = {}

        def add(rows) -> None:
            for query_id, text, source, withdrawn in rows:
                found[query_id] = (text, withdrawn is None and not (without_seeds and source == QuerySource.SEED))

        shown = select(Query.id, Query.text, Query.source, Player.consent_withdrawn_at).outerjoin(
            Player, Player.id == Query.author_id)
        add(connection.execute(shown.join(TaskQuery, TaskQuery.query_id == Query.id).where(
            col(TaskQuery.task_id).in_([row.id for row in page]))))
        missing = sorted({q for row in page for q in row.query_ids} - found.keys())
        for start in range(0, len(missing), 900):
            add(connection.execute(shown.where(col(Query.id).in_(missing[start:start + 900]))))
        return found

    def _write_page(self, connection, page) -> None:
        loads = orjson.loads
        page = [_Task(a, b, c, d, e, loads(grid), loads(picks), f, loads(queries), g, h, i, j, k)
                for a, b, c, d, e, grid, picks, f, queries, g, h, i, j, k in page]
        shown = self._shown_queries(connection, page)
        kept = [row for row in page if all(shown.get(q, (None, False))[1] for q in row.query_ids)]
        if not kept:
            return
        grid = _Lists([row.candidate_ids for row in kept])
        picked = _Lists([row.picks for row in kept])
        queries = _Lists([row.query_ids for row in kept])
        targets = np.fromiter((row.sticker_id for row in kept), dtype=np.int64, count=len(kept))
        task_ids = np.fromiter((row.id for row in kept), dtype=np.int64, count=len(kept))
        languages = column([row.language for row in kept], pa.string())
        target_keys, grid_keys, pick_keys = (self.keys.take(ids) for ids in (targets, grid.values, picked.values))
        texts = [shown[q][0] for q in queries.values.tolist()]
        pseudonym = self.pseudonym
        retrievers = [pseudonym("player", row.retriever_id) for row in kept]
        labelers = [pseudonym("player", row.player_id) for row in kept]
        rounds = [pseudonym("round", row.label_round_id) for row in kept]
        columns = [integers(task_ids), languages, column([row.setting for row in kept], pa.string()),
                   column([row.is_gold for row in kept], pa.bool_()),
                   target_keys, grid.arrow(grid_keys), picked.arrow(pick_keys),
                   column([row.hit_rank for row in kept], pa.int32()), queries.arrow(integers(queries.values)),
                   queries.arrow(column(texts, pa.string())), column(retrievers, pa.string()),
                   column([row.kind for row in kept], pa.string()), column(labelers, pa.string()),
                   column(rounds, pa.string()), column([row.answered_at for row in kept], ANSWERED_AT)]
        self.parquet.write_table(pa.Table.from_arrays(columns, schema=JUDGMENT_SCHEMA))
        target_py = target_keys.to_pylist()
        grid_py = grid.split(grid_keys.to_pylist())
        picks_py = picked.split(pick_keys.to_pylist())
        texts_py = queries.split(texts)
        self.jsonl.write_many([
            dict(zip(JUDGMENT_FIELDS, (row.id, row.language, row.setting, row.is_gold, target_py[i], grid_py[i],
                                       picks_py[i], row.hit_rank, row.query_ids, texts_py[i], retrievers[i], row.kind,
                                       labelers[i], rounds[i], row.answered_at), strict=True))
            for i, row in enumerate(kept)])
        self._qrels(kept, target_py, texts_py)
        self._negatives(task_ids, languages, targets, grid, grid_keys, picked)
        for row in kept:
            self.figures.setdefault((row.language, row.kind), GridFigures()).add(row.hit_rank, len(row.candidate_ids))

    def _qrels(self, kept, targets: list[str], texts: list[list[str]]) -> None:
        """Graded qrels (TSV, TREC, parquet) and the BEIR queries, per language."""
        for language in LANGUAGES:
            mine = [(task_query_id(row.id), targets[i], grade(row.hit_rank), texts[i], row.query_ids)
                    for i, row in enumerate(kept) if row.language == language]
            if not mine:
                continue
            for qid, target, score, _, _ in mine:
                self.qrels[language].write(qid, target, score)
            self.trec[language].write("".join(f"{qid} 0 {target} {score}\n" for qid, target, score, _, _ in mine))
            self.qrels_parquet[language].write_many([(qid, target, score) for qid, target, score, _, _ in mine])
            for qid, _, _, shown, ids in mine:
                self.queries[language].write({"_id": qid, "text": ", ".join(shown), "metadata": {"query_ids": ids}})

    def _negatives(self, task_ids: np.ndarray, languages: pa.Array, targets: np.ndarray, grid: _Lists,
                   grid_keys: pa.Array, picked: _Lists) -> None:
        """Every candidate but the target, `picked` with its rank (its first, should a pick repeat) or
        `unpicked`, computed over the page's grids at once (nine candidates a task: most of the export's
        rows)."""
        task = grid.parents()
        rank = np.zeros(len(grid.values), dtype=np.int32)
        counts = np.diff(picked.offsets)
        for k in range(int(counts.max(initial=0))):
            kth = np.full(len(task_ids), -1, dtype=np.int64)
            has = counts > k
            kth[has] = picked.values[picked.offsets[:-1][has] + k]
            rank[(rank == 0) & (grid.values == kth[task])] = k + 1
        chosen = np.flatnonzero(grid.values != targets[task])
        task, rank = task[chosen], rank[chosen]
        kinds = NEGATIVE_KINDS.take(integers(rank > 0))
        self.negatives.write_table(pa.Table.from_arrays(
            [integers(task_ids[task]), languages.take(integers(task)), self.keys.take(targets[task]),
             grid_keys.take(integers(chosen)), kinds,
             integers(rank, pa.int32(), valid=rank > 0)], schema=NEGATIVE_SCHEMA))

    def close(self) -> None:
        for sink in (self.jsonl, self.parquet, self.negatives, *self.qrels.values(),
                     *self.trec.values(), *self.queries.values(), *self.qrels_parquet.values()):
            sink.close()

    def grid_metrics(self, language: str) -> dict:
        """metrics.json's `grid_retrieval` of one language: per retriever kind, over the grids answered."""
        kinds = sorted({kind for lang, kind in self.figures if lang == language})
        return {"protocol": "Recall_n@K and MAP over the candidate grid shown (n candidates, one relevant: the "
                            "target), as in DSTC10-MOD; nDCG@10 of the same ranking (binary relevance)",
                **{kind: self.figures[language, kind].results() for kind in kinds}}


def write_judgments(db: Engine, folder: Path, settings, pseudonym) -> JudgmentsWriter:
    writer = JudgmentsWriter(folder, settings, pseudonym)
    try:
        writer.write_all(db)
    finally:
        writer.close()
    return writer
