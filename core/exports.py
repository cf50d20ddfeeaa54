"""The research export: one versioned folder with the dataset, its statistics and its evaluation.

    sticker_queries_{en,zh}_release.csv   the released StickerQueries format, exactly
    queries.jsonl, queries.parquet        one record per query, with provenance
    beir/{en,zh}/corpus.jsonl, queries.jsonl, qrels/train.tsv, qrels/test.tsv
    README.md                             dataset card (Hugging Face YAML front matter)
    stats.json                            Table 2 and Table 3 of the paper, per language
    metrics.json                          Table 4 (BLEU, ROUGE-L) and Table 6 (BM25 Recall@k)
    manifest.json                         sha256, bytes and rows of every file; software version

What enters: queries a retriever validated, moderators accepted or corrected (the corrected text),
and seed queries; never discarded ones, never those of players who withdrew consent. Everything is
streamed sticker by sticker from one ordered query per language, so memory does not grow with the
database (the search index for the evaluation is the one thing that does, and it is compact).
"""

from __future__ import annotations

import hmac
import logging
import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256
from importlib.metadata import version as package_version
from itertools import groupby
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
from sqlalchemy import DateTime, Engine, func, select, type_coerce
from sqlmodel import col

from core.datasets import consenting_usable, release_order
from core.research import LanguageReport
from storage.db import is_postgres
from storage.export_files import (
    MANIFEST,
    ExportFolder,
    JsonLines,
    ParquetRecords,
    Tsv,
    sha256_and_lines,
    write_json,
)
from storage.models import (
    LabelRound,
    Player,
    Query,
    RetrievalTask,
    Review,
    RoundKind,
    RoundStatus,
    Sticker,
    TaskQuery,
    TaskStatus,
    utcnow,
)
from storage.settings import Settings
from storage.sticker_queries import SEPARATOR, StickerQueriesWriter

log = logging.getLogger(__name__)

LANGUAGES = ("en", "zh")
BEIR_QRELS_HEADER = ("query-id", "corpus-id", "score")

QUERY_SCHEMA = pa.schema([
    ("query_id", pa.int64()),
    ("language", pa.string()),
    ("sticker_id", pa.string()),
    ("sticker_file", pa.string()),
    ("sticker_format", pa.string()),
    ("text", pa.string()),
    ("original_text", pa.string()),
    ("corrected_text", pa.string()),
    ("source", pa.string()),
    ("status", pa.string()),
    ("annotator", pa.string()),
    ("shown_to_retrievers", pa.int32()),
    ("retrieved_by", pa.int32()),
    ("resonant", pa.bool_()),
    ("review_decision", pa.string()),
    ("reviewed_at", pa.timestamp("us", tz="UTC")),
    ("created_at", pa.timestamp("us", tz="UTC")),
    ("validated_at", pa.timestamp("us", tz="UTC")),
    ("split", pa.string()),
])
QUERY_FIELDS = tuple(QUERY_SCHEMA.names)


def release_csv_name(language: str) -> str:
    return f"sticker_queries_{language}_release.csv"


def annotator_id(key: str, player_id: int | None) -> str | None:
    """Pseudonymous and stable across exports; without the key it cannot be traced to a player."""
    if player_id is None:
        return None
    return "a" + hmac.new(key.encode(), f"player:{player_id}".encode(), sha256).hexdigest()[:16]


class QueryRecord(NamedTuple):
    query_id: int
    sticker: str
    sticker_file: str
    sticker_format: str
    text: str
    corrected_text: str | None
    source: str
    status: str
    author_id: int | None
    hit_count: int
    shown: int
    review_action: str | None
    reviewed_at: datetime | None
    created_at: datetime
    validated_at: datetime | None

    @property
    def final_text(self) -> str:
        return self.corrected_text or self.text


def _utc(column):
    """Read a UTC time as a plain DateTime: on SQLite a naive datetime parsed in C, skipping the
    per-row Python of SQLModel's UTCDateTime (the writers treat naive times as UTC)."""
    return type_coerce(column, DateTime(timezone=True))


def query_records(db: Engine, language: str, batch: int = 5000) -> Iterator[QueryRecord]:
    """The dataset's queries of one language with their provenance, in release order, streamed."""
    # Correlated subqueries, each one index lookup per row: cheaper than joining grouped subqueries.
    shown = select(func.count()).where(TaskQuery.query_id == Query.id).scalar_subquery()
    last_review = select(Review).where(Review.query_id == Query.id).order_by(col(Review.id).desc()).limit(1)
    statement = (
        select(Query.id, Sticker.key, Sticker.file_path, Sticker.format, Query.text, Query.corrected_text,
               Query.source, Query.status, Query.author_id, Query.hit_count, shown,
               last_review.with_only_columns(Review.action).scalar_subquery(),
               _utc(last_review.with_only_columns(Review.created_at).scalar_subquery()),
               _utc(Query.created_at), _utc(Query.validated_at))
        .join(Sticker, Sticker.id == Query.sticker_id)
        .where(*consenting_usable(language))
        .order_by(release_order(db), Query.id)
    )
    with db.connect() as connection:
        if is_postgres(db):
            # Times come back in UTC, as on SQLite; LOCAL: the pooled connection keeps its own setting.
            connection.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
        result = connection.execution_options(yield_per=batch).execute(statement)
        yield from map(QueryRecord._make, result)


def participation(db: Engine, language: str) -> dict:
    """Table 2: players per role and tasks per player (players who withdrew consent left out)."""
    consenting = select(Player.id).where(col(Player.consent_withdrawn_at).is_(None))
    labels = (select(LabelRound.player_id.label("player_id"))
              .where(LabelRound.language == language, LabelRound.kind == RoundKind.LABEL,
                     LabelRound.status == RoundStatus.SUBMITTED, col(LabelRound.player_id).in_(consenting)))
    retrievals = (select(RetrievalTask.retriever_id.label("player_id"))
                  .where(RetrievalTask.language == language, RetrievalTask.status == TaskStatus.ANSWERED,
                         col(RetrievalTask.retriever_id).in_(consenting)))
    with db.connect() as connection:
        def count(statement) -> int:
            return connection.execute(select(func.count()).select_from(statement.subquery())).scalar_one()

        labelers = count(labels.distinct())
        retrievers = count(retrievals.distinct())
        players = count(labels.union(retrievals))  # UNION is distinct
        label_rounds, retrieval_tasks = count(labels), count(retrievals)
    return {
        "players": players,
        "labelers": labelers,
        "retrievers": retrievers,
        "label_rounds": label_rounds,
        "retrieval_tasks": retrieval_tasks,
        "tasks_per_player": round((label_rounds + retrieval_tasks) / players, 4) if players else None,
        "rounds_per_labeler": round(label_rounds / labelers, 4) if labelers else None,
        "tasks_per_retriever": round(retrieval_tasks / retrievers, 4) if retrievers else None,
    }


class _LanguageWriter:
    """Everything one language contributes to an export, written as its stickers stream past."""

    def __init__(self, folder: Path, language: str, settings: Settings, jsonl: JsonLines,
                 parquet: ParquetRecords) -> None:
        self.language = language
        self.settings = settings
        self.csv = StickerQueriesWriter(folder / release_csv_name(language))
        beir = folder / "beir" / language
        self.corpus = JsonLines(beir / "corpus.jsonl")
        self.beir_queries = JsonLines(beir / "queries.jsonl")
        self.qrels = {"train": Tsv(beir / "qrels" / "train.tsv", BEIR_QRELS_HEADER),
                      "test": Tsv(beir / "qrels" / "test.tsv", BEIR_QRELS_HEADER)}
        self.jsonl, self.parquet = jsonl, parquet
        self.report = LanguageReport(language, max_similarity_stickers=settings.export_similarity_stickers,
                                     max_eval_queries=settings.export_eval_queries)
        self._annotators: dict[int, str] = {}

    def annotator(self, player_id: int | None) -> str | None:
        if player_id is None:
            return None
        if player_id not in self._annotators:
            self._annotators[player_id] = annotator_id(self.settings.pseudonym_key, player_id)
        return self._annotators[player_id]

    def add_sticker(self, records: list[QueryRecord]) -> None:
        first = records[0]
        texts = [r.final_text for r in records]
        self.csv.write(first.sticker, texts)
        split = self.report.add(first.sticker, texts)
        self.corpus.write({"_id": first.sticker, "title": "", "text": SEPARATOR.join(texts[i] for i in split.train),
                           "metadata": {"file_path": first.sticker_file, "format": first.sticker_format}})
        test = set(split.test)
        for i, record in enumerate(records):
            part = "test" if i in test else "train"
            beir_id = f"q{record.query_id}"
            self.beir_queries.write({"_id": beir_id, "text": record.final_text, "metadata": {"split": part}})
            self.qrels[part].write(beir_id, record.sticker, 1)
            values = (record.query_id, self.language, record.sticker, record.sticker_file, record.sticker_format,
                      record.final_text, record.text, record.corrected_text, record.source, record.status,
                      self.annotator(record.author_id), record.shown, record.hit_count,
                      record.hit_count >= self.settings.resonance_retrievers, record.review_action,
                      record.reviewed_at, record.created_at, record.validated_at, part)
            self.jsonl.write(dict(zip(QUERY_FIELDS, values, strict=True)))
            self.parquet.write(values)

    def close(self) -> None:
        self.csv.close()
        for sink in (self.corpus, self.beir_queries, *self.qrels.values()):
            sink.close()


@dataclass(frozen=True)
class ExportSummary:
    version: str
    folder: Path
    queries: int
    stickers: dict[str, int]
    seconds: float
    stats: dict  # per language, as in stats.json
    metrics: dict  # per language, as in metrics.json


def run_export(db: Engine, settings: Settings, *, now: datetime | None = None,
               progress: Callable[[int], None] | None = None) -> ExportSummary:
    """Write a complete export under settings.export_dir; returns where and how much."""
    started = utcnow()
    now = now or started
    if settings.pseudonym_key == "change-me":
        log.warning("STICKTIONARY_PSEUDONYM_KEY is the default: annotator ids can be recomputed by anyone")
    export = ExportFolder(Path(settings.export_dir), now)
    with export as folder:
        jsonl = JsonLines(folder / "queries.jsonl")
        parquet = ParquetRecords(folder / "queries.parquet", QUERY_SCHEMA)
        stats, metrics, stickers = {}, {}, {}
        try:
            for language in LANGUAGES:
                writer = _LanguageWriter(folder, language, settings, jsonl, parquet)
                try:
                    for _, group in groupby(query_records(db, language), key=lambda r: r.sticker):
                        records = list(group)
                        writer.add_sticker(records)
                        if progress is not None:
                            progress(len(records))
                finally:
                    writer.close()
                stickers[language] = writer.csv.rows
                stats[language] = {"participation": participation(db, language),
                                   "queries": writer.report.statistics_table()}
                metrics[language] = writer.report.metrics()
        finally:
            jsonl.close()
            parquet.close()
        write_json(folder / "stats.json", {"generated_at": now.isoformat(), "languages": stats})
        write_json(folder / "metrics.json", {"generated_at": now.isoformat(), "languages": metrics})
        (folder / "README.md").write_text(dataset_card(stats, metrics, jsonl.rows, now), encoding="utf-8")
        write_json(folder / MANIFEST, manifest(folder, export.version, now, db, jsonl.rows))
    return ExportSummary(export.version, export.root / export.version, jsonl.rows, stickers,
                         (utcnow() - started).total_seconds(), stats, metrics)


def _rows(path: Path, lines: int) -> int | None:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(str(path)).metadata.num_rows
    if path.suffix in (".jsonl", ".csv", ".tsv"):
        # CSV and TSV files start with a header line; a CSV query text never contains a newline.
        return lines - 1 if path.suffix in (".csv", ".tsv") else lines
    return None


def software_versions() -> dict:
    versions = {"python": platform.python_version()}
    for package in ("sticktionary", "sqlalchemy", "rank-bm25", "jieba", "sacrebleu", "rouge-score", "pyarrow"):
        try:
            versions[package] = package_version(package)
        except Exception:  # noqa: BLE001 - a missing distribution is reported, not fatal
            versions[package] = None
    return versions


def manifest(folder: Path, version: str, now: datetime, db: Engine, queries: int) -> dict:
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        digest, lines = sha256_and_lines(path)
        files.append({"path": path.relative_to(folder).as_posix(), "bytes": path.stat().st_size,
                      "sha256": digest, "rows": _rows(path, lines)})
    return {"version": version, "created_at": now.isoformat(), "queries": queries,
            "database": db.dialect.name, "software": software_versions(), "files": files}


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return label
    return "10M<n<100M"


def dataset_card(stats: dict, metrics: dict, queries: int, now: datetime) -> str:
    rows = []
    for language in LANGUAGES:
        table3 = stats[language]["queries"]
        table2 = stats[language]["participation"]
        recall = metrics[language]["bm25_retrieval"]
        similarity = metrics[language]["lexical_similarity"]
        rows.append(f"| {language} | {table3['stickers']} | {table3['queries']} | {table3['queries_per_sticker']} | "
                    f"{table3['tokens_per_query']} | {table3['vocabulary_size']} | {table2['players']} | "
                    f"{similarity['bleu']} | {similarity['rouge_l_f1']} | {recall['recall@1']} | "
                    f"{recall['recall@10']} | {recall['recall@50']} |")
    return f"""---
license: mit
language:
- en
- zh
pretty_name: StickerQueries (Sticktionary live export)
size_categories:
- {_size_category(queries)}
task_categories:
- text-retrieval
task_ids:
- document-retrieval
tags:
- stickers
- query-generation
- games-with-a-purpose
configs:
- config_name: en
  data_files:
  - split: train
    path: {release_csv_name("en")}
- config_name: zh
  data_files:
  - split: train
    path: {release_csv_name("zh")}
- config_name: queries
  data_files:
  - split: train
    path: queries.parquet
---

# StickerQueries — Sticktionary export of {now.date().isoformat()}

Sticker search queries written by players of Sticktionary, a Telegram game with a purpose after
"Small Stickers, Big Meanings" (Chee et al., ACM MM 2025). A *labeler* sees a sticker in a real chat
context from U-Sticker and writes the queries they would type to find it; a *retriever* must find the
sticker among candidates from those queries. A query is in this dataset only if a retriever found the
sticker from it or a moderator accepted (or corrected) it.

## Files

- `{release_csv_name("en")}`, `{release_csv_name("zh")}`: the released StickerQueries format
  (`sticker_id,labeled_queries`, queries joined by ", ").
- `queries.jsonl`, `queries.parquet`: one record per query with its provenance: sticker, language,
  text (corrected where a moderator corrected it), original text, source, status, pseudonymous
  annotator id, how many retrievers were shown it and found the sticker, resonance, the review
  decision, timestamps and its split.
- `beir/<language>/`: a BEIR-format retrieval benchmark. `corpus.jsonl` has one document per sticker
  (its train queries; its file path in `metadata`), `queries.jsonl` every query, `qrels/train.tsv` and
  `qrels/test.tsv` the 80/20 split of each sticker's queries (by a hash of the text; a sticker with
  one query keeps it in train).
- `stats.json` (the paper's Tables 2 and 3), `metrics.json` (Table 4's lexical similarity and
  Table 6's BM25 Recall@k), `manifest.json` (sha256 and row count of every file).

## Summary

| lang | stickers | queries | queries/sticker | tokens/query | vocabulary | players | BLEU | ROUGE-L | R@1 | R@10 | R@50 |
|---|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

## Privacy and licence

Players consented to the research use of their queries; the only player id here is a keyed hash
that cannot be traced back without the operator's secret. Queries of players who withdrew consent
are removed from every later export. Queries: MIT. Sticker images are third-party artwork and are
not part of this export (see U-Sticker for them).

## Citation

```bibtex
@inproceedings{{chee2025stickers,
  title     = {{Small Stickers, Big Meanings: A Multilingual Sticker Semantic Understanding Dataset
               with a Gamified Approach}},
  author    = {{Chee, Heng Er Metilda and others}},
  booktitle = {{Proceedings of the 33rd ACM International Conference on Multimedia}},
  year      = {{2025}}
}}
```
"""
