"""The research export: one versioned folder with the dataset, its statistics and its evaluation.

    sticker_queries_{en,zh}_release.csv   the released StickerQueries format, exactly
    queries.jsonl, queries.parquet        one record per query, with provenance
    data/                                 parquet files behind the card's `datasets` configs (one format
                                          for every config, as `datasets.load_dataset` requires)
    beir/{en,zh}/                         BEIR layout, query-level split: corpus.jsonl, queries.jsonl,
                                          qrels/train.tsv, qrels/test.tsv
    beir-stickers/{en,zh}/                BEIR layout, sticker-level split (whole stickers held out)
    README.md                             dataset card (Hugging Face YAML front matter)
    stats.json                            Table 2 and Table 3 of the paper, per language
    metrics.json                          Table 4 (BLEU, ROUGE-L, CS, BERTScore) and Table 6 (BM25)
    manifest.json                         sha256, bytes and rows of every file; software version

What enters: queries a retriever validated, moderators accepted or corrected (the corrected text),
and seed queries unless the operator leaves them out (`export_without_seeds`); never discarded ones,
never those of players who withdrew consent. Every record says where the query came from and how it
was validated. Everything is streamed sticker by sticker from one ordered query per language, so
memory does not grow with the database (the search index for the evaluation is the one thing that
does, and it is compact).

Privacy by default: no export with a pseudonym key that could be guessed (core.pseudonyms), times
truncated to the hour, and a player's uncorrected text only when the operator asks for it.
"""

from __future__ import annotations

import logging
import platform
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version as package_version
from itertools import groupby
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
from sqlalchemy import Engine, func, select
from sqlmodel import col

from core.dataset_card import dataset_card
from core.datasets import consenting_usable, release_order
from core.export_evidence import Pseudonyms, evidence_card, write_evidence
from core.export_inline import config as inline_config
from core.export_inline import inline_card, write_inline
from core.export_layout import (
    BEIR_QUERY_SCHEMA,
    CORPUS_SCHEMA,
    QRELS_SCHEMA,
    QUERY_FIELDS,
    QUERY_SCHEMA,
    RELEASE_SCHEMA,
    data_file,
)
from core.pseudonyms import annotator_id, key_problem, round_id
from core.research import STICKER_SPLIT_PROTOCOL, LanguageReport, sticker_in_test
from core.search_log import query_tokens
from core.seed_exposure import SeedExposure
from core.text import normalize_query
from core.vocabulary import LANGUAGES
from storage.arrow_columns import column as arrow_column
from storage.db import read_ahead, utc_truncated
from storage.export_files import (
    MANIFEST,
    ExportFolder,
    JsonLines,
    ParquetRecords,
    Tsv,
    batch_heap,
    sha256_and_lines,
    write_json,
)
from storage.models import (
    LabelRound,
    Player,
    PlayerKind,
    Query,
    QuerySource,
    QueryStatus,
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
from storage.typed_jsonl import TypedJsonLines

log = logging.getLogger(__name__)

BEIR_QRELS_HEADER = ("query-id", "corpus-id", "score")
BEIR_LAYOUTS = ("beir", "beir-stickers")
_SPLIT_METADATA = {split: {"split": split} for split in ("train", "test")}  # shared: only serialized

# Where a query came from, and what made it ground truth (derived from Query.source and Query.status).
VALIDATION_OF_STATUS = {QueryStatus.VALIDATED: "retrieval_hit", QueryStatus.ACCEPTED: "moderator_accept",
                        QueryStatus.CORRECTED: "moderator_correct"}

class ExportRefused(ValueError):
    """The settings would make an export that is not safe to publish; the message says what to set."""


def release_csv_name(language: str) -> str:
    return f"sticker_queries_{language}_release.csv"


def validation_of(source: str, status: str) -> str:
    if source == QuerySource.SEED:
        return "seed"
    return VALIDATION_OF_STATUS[status]  # a StrEnum's members hash and compare as their values


def check_export_settings(settings: Settings) -> None:
    """A key someone could guess would let them map every annotator id back to a player."""
    problem = key_problem(settings.privacy.pseudonym_key)
    if problem:
        raise ExportRefused(problem)


class QueryRecord(NamedTuple):
    query_id: int
    sticker: str
    sticker_file: str
    sticker_format: str
    text: str
    normalized_text: str  # the game's taboo form of `text` (core.text.normalize_query)
    corrected_text: str | None
    source: str
    status: str
    author_id: int | None
    label_round_id: int | None
    hit_count: int
    shown: int
    review_action: str | None
    reviewed_at: datetime | None  # the times already cut to the export's resolution, by the database
    created_at: datetime
    validated_at: datetime | None
    release_quoted: bool | None  # a seed whose release row quoted beyond need (storage.sticker_queries)
    search_tokens: str | None  # stored when it became usable (core.search_log), None before they were

    @property
    def final_text(self) -> str:
        return self.corrected_text or self.text


def query_records(db: Engine, language: str, batch: int = 5000, *, with_seeds: bool = True,
                  resolution: str) -> Iterator[QueryRecord]:
    """The dataset's queries of one language with their provenance, in release order, streamed; times
    cut to `resolution` (naive, UTC)."""
    # Correlated subqueries, each one index lookup per row: cheaper than joining grouped subqueries.
    shown = select(func.count()).where(TaskQuery.query_id == Query.id).scalar_subquery()
    last_review = select(Review).where(Review.query_id == Query.id).order_by(col(Review.id).desc()).limit(1)
    statement = (
        select(Query.id, Sticker.key, Sticker.file_path, Sticker.format, Query.text, Query.normalized_text,
               Query.corrected_text,
               Query.source, Query.status, Query.author_id, Query.label_round_id, Query.hit_count, shown,
               last_review.with_only_columns(Review.action).scalar_subquery(),
               utc_truncated(db, last_review.with_only_columns(Review.created_at).scalar_subquery(), resolution),
               utc_truncated(db, Query.created_at, resolution), utc_truncated(db, Query.validated_at, resolution),
               Query.release_quoted, Query.search_tokens)
        .join(Sticker, Sticker.id == Query.sticker_id)
        .where(*consenting_usable(language))
        .order_by(release_order(db), Query.id)
    )
    if not with_seeds:
        statement = statement.where(Query.source != QuerySource.SEED)
    # Read on the other core while this one writes: the database works without the GIL (storage.db.read_ahead).
    for records in read_ahead(_record_batches(db, statement.execution_options(yield_per=batch))):
        yield from records


def _record_batches(db: Engine, statement) -> Iterator[list[QueryRecord]]:
    with db.connect() as connection:
        result = connection.execute(statement)
        for rows in result.partitions():
            yield list(map(QueryRecord._make, rows))


def participation(db: Engine, language: str) -> dict:
    """Table 2: players per role and tasks per player (people only: players who withdrew consent and
    partner models left out)."""
    consenting = select(Player.id).where(col(Player.consent_withdrawn_at).is_(None), Player.kind == PlayerKind.HUMAN)
    labels = (select(LabelRound.player_id.label("player_id"))
              .where(LabelRound.language == language, LabelRound.kind == RoundKind.LABEL,
                     LabelRound.status == RoundStatus.SUBMITTED, col(LabelRound.player_id).in_(consenting)))
    retrievals = (select(RetrievalTask.retriever_id.label("player_id"))
                  .where(RetrievalTask.language == language, RetrievalTask.status == TaskStatus.ANSWERED,
                         col(RetrievalTask.retriever_id).in_(consenting)))
    with db.connect() as connection:
        # Per player: who played each role and how often, in one grouped read per role (counting each
        # figure on its own read the tables five times).
        rounds_of = dict(connection.execute(labels.add_columns(func.count()).group_by(LabelRound.player_id)).all())
        tasks_of = dict(connection.execute(
            retrievals.add_columns(func.count()).group_by(RetrievalTask.retriever_id)).all())
    labelers, retrievers = len(rounds_of), len(tasks_of)
    players = len(rounds_of.keys() | tasks_of.keys())
    label_rounds, retrieval_tasks = sum(rounds_of.values()), sum(tasks_of.values())
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


class _BeirWriter:
    """One BEIR layout of one language: the JSONL/TSV files BEIR's loader reads. Their parquet mirrors
    are made afterwards from queries.parquet (derive_config_files), except the corpus'."""

    def __init__(self, folder: Path, layout: str, language: str) -> None:
        beir = folder / layout / language
        self.corpus = JsonLines(beir / "corpus.jsonl")
        self.queries = JsonLines(beir / "queries.jsonl")
        self.qrels = {split: Tsv(beir / "qrels" / f"{split}.tsv", BEIR_QRELS_HEADER) for split in ("train", "test")}
        self.corpus_parquet = ParquetRecords(folder / data_file(layout, language, "corpus"), CORPUS_SCHEMA)

    def document(self, sticker: str, text: str, metadata: dict) -> None:
        self.corpus.write({"_id": sticker, "title": "", "text": text, "metadata": metadata})
        self.corpus_parquet.write((sticker, "", text))

    def query(self, query_id: str, text: str, sticker: str, split: str) -> None:
        self.queries.write({"_id": query_id, "text": text, "metadata": _SPLIT_METADATA[split]})
        self.qrels[split].write(query_id, sticker, 1)

    def close(self) -> None:
        for sink in (self.corpus, self.queries, *self.qrels.values(), self.corpus_parquet):
            sink.close()


class ConfigMirrors:
    """The `datasets` configs' parquet files that hold query rows (the default config's train/test,
    BEIR queries and qrels of both layouts), cut by Arrow from each batch of queries.parquet as it is
    written: no per-row Python and no second read."""

    def __init__(self, folder: Path) -> None:
        import pyarrow.parquet as pq

        self.schemas = {data_file("queries", split): QUERY_SCHEMA for split in ("train", "test")}
        for language in LANGUAGES:
            self.schemas[data_file("beir", language, "queries")] = BEIR_QUERY_SCHEMA
            for layout in BEIR_LAYOUTS:
                for split in ("train", "test"):
                    self.schemas[data_file(layout, language, f"qrels_{split}")] = QRELS_SCHEMA
        self.writers: dict[str, pq.ParquetWriter] = {}
        for path, schema in self.schemas.items():  # every file exists, if need be with no rows
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            self.writers[path] = pq.ParquetWriter(str(folder / path), schema, compression="zstd")

    def _write(self, path: str, columns: list) -> None:
        if len(columns[0]):
            self.writers[path].write_table(pa.Table.from_arrays(columns, schema=self.schemas[path]))

    def add(self, table: pa.Table) -> None:
        import pyarrow.compute as pc

        # Constants as scalars taken from an array built by storage.arrow_columns: pyarrow would import
        # pandas to convert Python values (see there).
        names = ("train", "test", "q", "", *LANGUAGES)
        const = dict(zip(names, arrow_column(names, pa.string()), strict=True))
        for split in ("train", "test"):
            self._write(data_file("queries", split), table.filter(pc.equal(table["split"], const[split])).columns)
        for language in LANGUAGES:
            mine = table.filter(pc.equal(table["language"], const[language]))
            if not mine.num_rows:
                continue
            ids = pc.binary_join_element_wise(const["q"], pc.cast(mine["query_id"], pa.string()), const[""])
            self._write(data_file("beir", language, "queries"), [ids, mine["text"]])
            for layout, column in (("beir", "split"), ("beir-stickers", "sticker_split")):
                for split in ("train", "test"):
                    mask = pc.equal(mine[column], const[split])
                    chosen = ids.filter(mask)
                    self._write(data_file(layout, language, f"qrels_{split}"), [
                        chosen, mine["sticker_id"].filter(mask), arrow_column([1] * len(chosen), pa.int32())])

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


class _LanguageWriter:
    """Everything one language contributes to an export, written as its stickers stream past."""

    def __init__(self, folder: Path, language: str, settings: Settings, parquet: ParquetRecords,
                 jsonl: JsonLines) -> None:
        self.language = language
        self.settings = settings
        self.csv = StickerQueriesWriter(folder / release_csv_name(language))
        self.release = ParquetRecords(folder / data_file("release", language), RELEASE_SCHEMA)
        self.beir = {layout: _BeirWriter(folder, layout, language) for layout in BEIR_LAYOUTS}
        self.jsonl, self.parquet = jsonl, parquet
        self.report = LanguageReport(language, max_similarity_stickers=settings.exports.export_similarity_stickers,
                                     max_eval_queries=settings.exports.export_eval_queries,
                                     keep_texts=settings.exports.export_semantic,
                                     variants=False)  # sacrebleu's variant: `report` has it; its imports cost 16 MB
        self.seeds = SeedExposure()
        self.provenance: Counter = Counter()
        self.sticker_split: Counter = Counter()
        self._annotators: dict[int, str] = {}
        self._round: tuple[int | None, str | None] = (None, None)

    def annotator(self, player_id: int | None) -> str | None:
        if player_id is None:
            return None
        if player_id not in self._annotators:  # few players, many queries each
            self._annotators[player_id] = annotator_id(self.settings.privacy.pseudonym_key, player_id)
        return self._annotators[player_id]

    def label_round(self, label_round_id: int | None) -> str | None:
        # A round's queries arrive together (one sticker each): remember the last one, not all of them.
        if label_round_id != self._round[0]:
            self._round = (label_round_id, round_id(self.settings.privacy.pseudonym_key, label_round_id))
        return self._round[1]

    def add_sticker(self, records: list[QueryRecord]) -> None:
        settings, first = self.settings, records[0]
        texts = [r.final_text for r in records]
        self.csv.write(first.sticker, texts, quoted=any(r.release_quoted for r in records))
        self.release.write((first.sticker, SEPARATOR.join(texts)))
        # Authors known: inter-annotator pairs come from different players, and a round never straddles the split.
        authors = [r.author_id for r in records]
        units = [(r.author_id, r.label_round_id) if r.author_id is not None else None for r in records]
        normalized = [normalize_query(r.corrected_text) if r.corrected_text else r.normalized_text for r in records]
        # The tokens stored when each query became usable, as the game's search index has them (a tokenizer
        # upgrade leaves older queries on the tokens they were searched by until they are stored again).
        tokens = [query_tokens(r.text, r.corrected_text, r.search_tokens) for r in records]
        split = self.report.add(first.sticker, texts, authors=authors, units=units, normalized=normalized,
                                tokens=tokens)
        metadata = {"file_path": first.sticker_file, "format": first.sticker_format}
        self.beir["beir"].document(first.sticker, SEPARATOR.join(texts[i] for i in split.train), metadata)
        # Sticker-level: the document is the sticker itself (no query text in it, so none leaks).
        self.beir["beir-stickers"].document(first.sticker, "", metadata)
        whole = "test" if sticker_in_test(first.sticker) else "train"
        self.sticker_split[whole] += 1
        test = set(split.test)
        # Once per sticker rather than per query: a million queries make every lookup count.
        beir, beir_stickers, provenance, seeds = self.beir["beir"], self.beir["beir-stickers"], self.provenance, self.seeds
        export_original, resonance = settings.privacy.export_original_text, settings.rules.resonance_retrievers
        for i, record in enumerate(records):
            text = texts[i]
            part = "test" if i in test else "train"
            beir_id = f"q{record.query_id}"
            beir.query(beir_id, text, first.sticker, part)
            beir_stickers.query(beir_id, text, first.sticker, whole)
            validation = validation_of(record.source, record.status)
            provenance[record.source, validation] += 1
            seed = seeds.add(record)  # a seed's times are its import's: not exported
            original = record.text if export_original and record.corrected_text else None
            values = (record.query_id, self.language, first.sticker, first.sticker_file, first.sticker_format,
                      text, original, record.corrected_text, record.source, validation, record.status,
                      self.annotator(record.author_id), self.label_round(record.label_round_id),
                      record.shown, record.hit_count, record.hit_count >= resonance,
                      record.review_action, record.reviewed_at, None if seed else record.created_at,
                      None if seed else record.validated_at, part, whole)
            self.jsonl.write(dict(zip(QUERY_FIELDS, values, strict=True)))
            self.parquet.write(values)

    def close(self) -> None:
        self.csv.close()
        self.release.close()
        for writer in self.beir.values():
            writer.close()

    def metrics(self) -> dict:
        settings = self.settings
        model = settings.exports.semantic_model(self.language) if settings.exports.export_semantic else None
        metrics = self.report.metrics(semantic_model=model)
        if model is None:
            metrics["semantic_similarity"] = {"unavailable": "turned off (STICKTIONARY_EXPORT_SEMANTIC=false)"}
        metrics["sticker_split"] = {"train_stickers": self.sticker_split["train"],
                                    "test_stickers": self.sticker_split["test"], "protocol": STICKER_SPLIT_PROTOCOL}
        return metrics


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
    """Write a complete export under settings.exports.export_dir; returns where and how much.
    Raises ExportRefused (before touching anything) when the settings are not safe to publish."""
    check_export_settings(settings)
    started = utcnow()
    now = now or started
    export = ExportFolder(Path(settings.exports.export_dir), now)
    with export as folder, batch_heap():
        jsonl = TypedJsonLines(folder / "queries.jsonl")
        mirrors = ConfigMirrors(folder)
        parquet = ParquetRecords(folder / "queries.parquet", QUERY_SCHEMA, on_flush=mirrors.add)
        stats, metrics, stickers, provenance = {}, {}, {}, {}
        try:
            for language in LANGUAGES:
                writer = _LanguageWriter(folder, language, settings, parquet, jsonl)
                try:
                    records = query_records(db, language, with_seeds=not settings.exports.export_without_seeds,
                                            resolution=settings.privacy.export_time_resolution)
                    for _, group in groupby(records, key=lambda r: r.sticker):
                        group = list(group)
                        writer.add_sticker(group)
                        if progress is not None:
                            progress(len(group))
                finally:
                    writer.close()
                stickers[language] = writer.csv.rows
                provenance[language] = [{"source": source, "validation": validation, "queries": n}
                                        for (source, validation), n in sorted(writer.provenance.items())]
                stats[language] = {"participation": participation(db, language),
                                   "queries": writer.report.statistics_table(), "provenance": provenance[language],
                                   "seeds": writer.seeds.table(db, language)}
                metrics[language] = writer.metrics()
        finally:
            jsonl.close()
            parquet.close()
            mirrors.close()
        # Configs beside the queries, each written by its own module: the game's own evidence
        # (judgments, contexts, every query flagged, PerSRV rows, images: core/export_evidence.py) and
        # the inline choices (core/export_inline.py).
        evidence = write_evidence(db, folder, settings, Pseudonyms(
            lambda player: annotator_id(settings.privacy.pseudonym_key, player),
            lambda label_round: round_id(settings.privacy.pseudonym_key, label_round)))
        for language in LANGUAGES:
            metrics[language]["grid_retrieval"] = evidence["grid_retrieval"][language]
        inline = write_inline(db, folder, lambda player_id: annotator_id(settings.privacy.pseudonym_key, player_id))
        about = {"generated_at": now.isoformat(), "seeds_included": not settings.exports.export_without_seeds,
                 "time_resolution": settings.privacy.export_time_resolution}
        write_json(folder / "stats.json", {**about, "languages": stats, "evidence": evidence["files"], "inline": inline})
        write_json(folder / "metrics.json", {**about, "languages": metrics})
        sections = [evidence_card(evidence), inline_card(inline["choices"], settings.exports.inline_feedback_sampling)]
        extra_configs = [inline_config()] if inline["choices"] else []
        (folder / "README.md").write_text(dataset_card(stats, metrics, jsonl.rows, now, settings, sections,
                                                       extra_configs), encoding="utf-8")
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
    for package in ("sticktionary", "sqlalchemy", "rank-bm25", "jieba", "sacrebleu", "pyarrow",
                    "torch", "transformers", "bert-score"):
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
