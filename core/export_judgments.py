"""The game's relevance judgments in the research export: every answered retrieval task, human and gold.

    judgments.jsonl, data/judgments/train.parquet   one row per answered task (the `judgments` config)
    judgments/<lang>/qrels.tsv, qrels.trec           graded qrels: the target graded by the rank it was found
                                                     at (1st: 3, 2nd: 2, 3rd: 1), a miss kept as a judged 0
    judgments/<lang>/queries.jsonl                   BEIR queries: one per task, the queries shown, joined
    judgments/negatives.jsonl, data/judgments/negatives.parquet
                                                     explicit negatives: every candidate seen and not picked,
                                                     and every candidate picked wrongly (human confusions)

A task is left out when its retriever, its labeler or the author of a query it showed withdrew consent,
and when it showed a seed query in an export without seeds. Tasks are read in id ranges (keyset pages),
so memory does not grow with the number of tasks.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pyarrow as pa
from sqlalchemy import Engine, select
from sqlalchemy.orm import aliased
from sqlmodel import col

from core.export_layout import data_file
from core.vocabulary import LANGUAGES
from storage.export_files import JsonLines, ParquetRecords, Tsv
from storage.models import LabelRound, Player, Query, QuerySource, RetrievalTask, Sticker, TaskStatus
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
GRADED_QRELS_SCHEMA = pa.schema([("query-id", pa.string()), ("corpus-id", pa.string()), ("score", pa.int32())])
GRADE_OF_RANK = {1: 3, 2: 2, 3: 1}
JUDGMENTS_FILE = "judgments.jsonl"
NEGATIVES_FILE = "judgments/negatives.jsonl"
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

    def __init__(self, folder: Path, settings, pseudonym, coarsen) -> None:
        self.folder = folder
        self.settings = settings
        self.pseudonym = pseudonym  # (kind, id) -> keyed pseudonym
        self.coarsen = coarsen
        self.jsonl = TypedJsonLines(folder / JUDGMENTS_FILE)
        self.parquet = ParquetRecords(folder / data_file("judgments", "train"), JUDGMENT_SCHEMA)
        self.negatives_jsonl = TypedJsonLines(folder / NEGATIVES_FILE)
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
        self.sticker_keys: dict[int, str] = {}

    def write_all(self, db: Engine) -> int:
        last = 0
        with db.connect() as connection:
            while True:
                page = connection.execute(self._page_statement(last)).all()
                if not page:
                    break
                last = page[-1].id
                self._write_page(connection, page)
        return self.jsonl.rows

    def _page_statement(self, after: int):
        retriever = aliased(Player)
        labeler = aliased(Player)
        return (
            select(RetrievalTask.id, RetrievalTask.language, RetrievalTask.setting, RetrievalTask.is_gold,
                   RetrievalTask.sticker_id, RetrievalTask.candidate_ids, RetrievalTask.picks,
                   RetrievalTask.hit_rank, RetrievalTask.query_ids, RetrievalTask.retriever_id, retriever.kind,
                   LabelRound.player_id, RetrievalTask.label_round_id, RetrievalTask.answered_at)
            .join(retriever, retriever.id == RetrievalTask.retriever_id)
            .outerjoin(LabelRound, LabelRound.id == RetrievalTask.label_round_id)
            .outerjoin(labeler, labeler.id == LabelRound.player_id)
            .where(RetrievalTask.status == TaskStatus.ANSWERED, RetrievalTask.id > after,
                   col(retriever.consent_withdrawn_at).is_(None), col(labeler.consent_withdrawn_at).is_(None))
            .order_by(RetrievalTask.id).limit(PAGE)
        )

    def _keys(self, connection, sticker_ids: set[int]) -> None:
        """The page's sticker keys only: a map of every sticker would grow with the archive."""
        self.sticker_keys = {}
        missing = sorted(sticker_ids)
        for start in range(0, len(missing), 900):
            chunk = missing[start:start + 900]
            self.sticker_keys.update(connection.execute(
                select(Sticker.id, Sticker.key).where(col(Sticker.id).in_(chunk))).all())

    def _queries(self, connection, query_ids: list[int]) -> dict[int, tuple[str, bool]]:
        """query id -> (text as shown, exportable): not exportable when its author withdrew consent, or
        when it is a seed and the export leaves seeds out."""
        without_seeds = self.settings.exports.export_without_seeds
        found = {}
        for start in range(0, len(query_ids), 900):
            chunk = query_ids[start:start + 900]
            rows = connection.execute(
                select(Query.id, Query.text, Query.source, Player.consent_withdrawn_at)
                .outerjoin(Player, Player.id == Query.author_id).where(col(Query.id).in_(chunk)))
            for query_id, text, source, withdrawn in rows:
                found[query_id] = (text, withdrawn is None and not (without_seeds and source == QuerySource.SEED))
        return found

    def _write_page(self, connection, page) -> None:
        stickers, query_ids = set(), set()
        for row in page:
            stickers.add(row.sticker_id)
            stickers.update(row.candidate_ids)
            stickers.update(row.picks)
            query_ids.update(row.query_ids)
        self._keys(connection, stickers)
        queries = self._queries(connection, sorted(query_ids))
        keys = self.sticker_keys
        resolution = self.settings.privacy.export_time_resolution
        for row in page:
            shown = [queries.get(q) for q in row.query_ids]
            if any(q is None or not q[1] for q in shown):
                continue
            target = keys[row.sticker_id]
            candidates = [keys[s] for s in row.candidate_ids]
            picks = [keys[s] for s in row.picks]
            values = (row.id, row.language, row.setting, row.is_gold, target, candidates, picks, row.hit_rank,
                      list(row.query_ids), [q[0] for q in shown], self.pseudonym("player", row.retriever_id),
                      row.kind, self.pseudonym("player", row.player_id),
                      self.pseudonym("round", row.label_round_id), self.coarsen(row.answered_at, resolution))
            self.jsonl.write(dict(zip(JUDGMENT_FIELDS, values, strict=True)))
            self.parquet.write(values)
            self._derived(row, target, candidates, picks, [q[0] for q in shown])

    def _derived(self, row, target: str, candidates: list[str], picks: list[str], texts: list[str]) -> None:
        language, qid = row.language, task_query_id(row.id)
        score = grade(row.hit_rank)
        self.qrels[language].write(qid, target, score)
        self.trec[language].write(f"{qid} 0 {target} {score}\n")
        self.qrels_parquet[language].write((qid, target, score))
        self.queries[language].write({"_id": qid, "text": ", ".join(texts),
                                      "metadata": {"query_ids": list(row.query_ids)}})
        picked = {sticker: rank for rank, sticker in enumerate(picks, 1)}
        for sticker in candidates:
            if sticker == target:
                continue
            kind, rank = ("picked", picked[sticker]) if sticker in picked else ("unpicked", None)
            values = (row.id, language, target, sticker, kind, rank)
            self.negatives.write(values)
            self.negatives_jsonl.write(dict(zip(NEGATIVE_SCHEMA.names, values, strict=True)))
        self.figures.setdefault((language, row.kind), GridFigures()).add(row.hit_rank, len(candidates))

    def close(self) -> None:
        for sink in (self.jsonl, self.parquet, self.negatives_jsonl, self.negatives, *self.qrels.values(),
                     *self.trec.values(), *self.queries.values(), *self.qrels_parquet.values()):
            sink.close()

    def grid_metrics(self, language: str) -> dict:
        """metrics.json's `grid_retrieval` of one language: per retriever kind, over the grids answered."""
        kinds = sorted({kind for lang, kind in self.figures if lang == language})
        return {"protocol": "Recall_n@K and MAP over the candidate grid shown (n candidates, one relevant: the "
                            "target), as in DSTC10-MOD; nDCG@10 of the same ranking (binary relevance)",
                **{kind: self.figures[language, kind].results() for kind in kinds}}


def write_judgments(db: Engine, folder: Path, settings, pseudonym, coarsen) -> JudgmentsWriter:
    writer = JudgmentsWriter(folder, settings, pseudonym, coarsen)
    try:
        writer.write_all(db)
    finally:
        writer.close()
    return writer
