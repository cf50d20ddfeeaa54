"""What the game saw besides the usable queries, in the research export:

    contexts.jsonl, data/contexts/train.parquet   one row per label round: the chat context shown (its
                                                  U-Sticker source and messages) and the taboo queries shown
    data/all/train.parquet                        every submitted query, whatever became of it (pending,
                                                  validated, missed, accepted, corrected, discarded), flagged
                                                  with its status, `usable` and the last review decision: the
                                                  default config's queries first, then the others
    persrv/<lang>/{train,test}.jsonl              `userid, query, docid` rows (PerSRV's layout) of the usable
    data/persrv/<lang>/{train,test}.parquet       queries with an author, split by author: each author's
                                                  rows on one side

Players who withdrew consent are left out of every file, as from the default configs.
"""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
from sqlalchemy import Engine, func, select
from sqlmodel import col

from core.datasets import consenting_authors
from core.export_layout import data_file
from core.research import stable_hash, sticker_in_test
from core.vocabulary import LANGUAGES
from storage.arrow_columns import column as arrow_column
from storage.db import utc_truncated
from storage.export_files import ParquetRecords
from storage.models import (
    ChatContext,
    LabelRound,
    Player,
    Query,
    QueryStatus,
    Review,
    RoundKind,
    Sticker,
    TaskQuery,
)
from storage.typed_jsonl import TypedJsonLines

MESSAGE = pa.struct([("sender", pa.string()), ("text", pa.string()), ("sticker", pa.bool_()), ("target", pa.bool_())])
CONTEXT_SCHEMA = pa.schema([
    ("round_id", pa.string()),
    ("language", pa.string()),
    ("labeler", pa.string()),
    ("sticker_id", pa.string()),
    ("status", pa.string()),
    ("context_id", pa.int64()),
    ("conversation", pa.string()),
    ("message_id", pa.int64()),
    ("messages", pa.list_(MESSAGE)),
    ("taboo_shown", pa.list_(pa.int64())),
    ("created_at", pa.timestamp("us", tz="UTC")),
    ("submitted_at", pa.timestamp("us", tz="UTC")),
])
CONTEXT_FIELD_DOCS = {
    "round_id": "keyed pseudonym of the label round (`label_round` of the query records, `round_id` of judgments)",
    "labeler": "keyed pseudonym of the labeler (`annotator`)",
    "status": "submitted, skipped, expired or open",
    "context_id": "the chat context's id in this database, null when the round had none",
    "conversation": "the U-Sticker conversation file the context comes from",
    "message_id": "the U-Sticker message id of the sticker's use in that conversation",
    "messages": "the context as shown: chat members as letters A, B, C… in speaking order, the target last",
    "taboo_shown": "query ids (the `all` config) the label screen listed as taken, as first shown; null for "
                   "rounds from before it was recorded",
}
ALL_SCHEMA = pa.schema([
    ("query_id", pa.int64()),
    ("language", pa.string()),
    ("sticker_id", pa.string()),
    ("text", pa.string()),
    ("original_text", pa.string()),
    ("corrected_text", pa.string()),
    ("source", pa.string()),
    ("status", pa.string()),
    ("usable", pa.bool_()),
    ("annotator", pa.string()),
    ("label_round", pa.string()),
    ("shown_to_retrievers", pa.int32()),
    ("retrieved_by", pa.int32()),
    ("review_decision", pa.string()),
    ("reviewed_at", pa.timestamp("us", tz="UTC")),
    ("created_at", pa.timestamp("us", tz="UTC")),
    ("validated_at", pa.timestamp("us", tz="UTC")),
    ("sticker_split", pa.string()),
])
ALL_STATUS_DOCS = ("pending (waiting for a retriever), validated (found by one), needs_review (missed, waiting "
                   "for a moderator), accepted, corrected, discarded (by a moderator)")
PERSRV_SCHEMA = pa.schema([("userid", pa.string()), ("query", pa.string()), ("docid", pa.string())])
PERSRV_TEST_FRACTION = 0.2
CONTEXTS_FILE = "contexts.jsonl"
PAGE = 5000
BATCH = 8192  # rows of queries.parquet read at a time (the default 65,536 costs ~70 MB)


def evidence_files() -> dict[str, dict[str, str]]:
    """Config name -> {split: parquet file}, for the dataset card."""
    files = {"contexts": {"train": data_file("contexts", "train")}, "all": {"train": data_file("all", "train")}}
    for language in LANGUAGES:
        files[f"persrv_{language}"] = {split: data_file("persrv", language, split) for split in ("train", "test")}
    return files


def _message(m: dict) -> dict:
    return {"sender": m.get("sender"), "text": m.get("text"), "sticker": bool(m.get("sticker")),
            "target": bool(m.get("target"))}


def write_contexts(db: Engine, folder: Path, settings, pseudonym) -> int:
    fields = CONTEXT_SCHEMA.names
    jsonl = TypedJsonLines(folder / CONTEXTS_FILE)
    parquet = ParquetRecords(folder / data_file("contexts", "train"), CONTEXT_SCHEMA)
    resolution = settings.privacy.export_time_resolution
    last = 0
    try:
        with db.connect() as connection:
            while True:
                page = connection.execute(
                    select(LabelRound.id, LabelRound.language, LabelRound.player_id, Sticker.key, LabelRound.status,
                           LabelRound.context_id, ChatContext.conversation, ChatContext.message_id,
                           ChatContext.messages, LabelRound.taboo_shown,
                           utc_truncated(db, LabelRound.created_at, resolution),
                           utc_truncated(db, LabelRound.submitted_at, resolution))
                    .join(Player, Player.id == LabelRound.player_id)
                    .join(Sticker, Sticker.id == LabelRound.sticker_id)
                    .outerjoin(ChatContext, ChatContext.id == LabelRound.context_id)
                    .where(LabelRound.kind == RoundKind.LABEL, LabelRound.id > last,
                           col(Player.consent_withdrawn_at).is_(None))
                    .order_by(LabelRound.id).limit(PAGE)).all()
                if not page:
                    break
                last = page[-1][0]
                for (round_key, language, player, sticker, status, context_id, conversation, message_id, messages,
                     taboo, created, submitted) in page:
                    values = (pseudonym("round", round_key), language, pseudonym("player", player), sticker, status,
                              context_id, conversation, message_id,
                              None if messages is None else [_message(m) for m in messages],
                              None if taboo is None else list(taboo), created, submitted)
                    jsonl.write(dict(zip(fields, values, strict=True)))
                    parquet.write(values)
    finally:
        jsonl.close()
        parquet.close()
    return parquet.rows


NOT_USABLE = (QueryStatus.PENDING, QueryStatus.NEEDS_REVIEW, QueryStatus.DISCARDED)  # submitted, not ground truth


def unusable_query_rows(db: Engine, resolution: str):
    """The submitted queries that are not ground truth (drafts of open rounds are not submitted), of
    consenting authors, in id order: keyset pages, so neither database sorts or holds them all."""
    shown = select(func.count()).where(TaskQuery.query_id == Query.id).scalar_subquery()
    last_review = select(Review).where(Review.query_id == Query.id).order_by(col(Review.id).desc()).limit(1)
    statement = (
        select(Query.id, Query.language, Sticker.key, Query.text, Query.corrected_text, Query.source, Query.status,
               Query.author_id, Query.label_round_id, shown, Query.hit_count,
               last_review.with_only_columns(Review.action).scalar_subquery(),
               utc_truncated(db, last_review.with_only_columns(Review.created_at).scalar_subquery(), resolution),
               utc_truncated(db, Query.created_at, resolution), utc_truncated(db, Query.validated_at, resolution))
        .join(Sticker, Sticker.id == Query.sticker_id)
        .where(col(Query.status).in_(NOT_USABLE), consenting_authors())
        .order_by(Query.id).limit(PAGE)
    )
    last = 0
    with db.connect() as connection:
        while True:
            page = connection.execute(statement.where(Query.id > last)).all()
            if not page:
                return
            last = page[-1][0]
            yield from page


def write_all_queries(db: Engine, folder: Path, settings, pseudonym) -> int:
    """The `all` config: the usable queries as queries.parquet has them (copied by Arrow, `usable` true),
    then the submitted ones that are not (in id order), flagged (`usable` false) with their status and review
    decision."""
    import pyarrow.parquet as pq

    writer = ParquetRecords(folder / data_file("all", "train"), ALL_SCHEMA, batch_rows=PAGE)
    columns = [name for name in ALL_SCHEMA.names if name != "usable"]
    try:
        source = pq.ParquetFile(str(folder / "queries.parquet"))
        for batch in source.iter_batches(columns=columns, batch_size=BATCH, use_threads=False):
            arrays = [batch.column(name) if name != "usable" else arrow_column([True] * batch.num_rows, pa.bool_())
                      for name in ALL_SCHEMA.names]
            writer.write_table(pa.Table.from_arrays(arrays, schema=ALL_SCHEMA))
        for (query_id, language, sticker, text, corrected, source, status, author, round_key, shown, hits, decision,
             reviewed, created, validated) in unusable_query_rows(db, settings.privacy.export_time_resolution):
            if language in LANGUAGES:
                writer.write((query_id, language, sticker, corrected or text, None, corrected, source, status, False,
                              pseudonym("player", author), pseudonym("round", round_key), shown, hits, decision,
                              reviewed, created, validated, "test" if sticker_in_test(sticker) else "train"))
    finally:
        writer.close()
    return writer.rows


def author_in_test(authors: list[str]) -> set[str]:
    """The authors whose rows are test: a fifth of them (at least one when there are two), the same on
    every run (ordered by a stable hash of the pseudonym)."""
    if len(authors) < 2:
        return set()
    ordered = sorted(authors, key=lambda a: (stable_hash("author-split", a), a))
    return set(ordered[:max(1, math.floor(len(authors) * PERSRV_TEST_FRACTION))])


def write_persrv(folder: Path) -> dict[str, dict[str, int]]:
    """From queries.parquet (already written): its usable queries with an author."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    source = pq.ParquetFile(str(folder / "queries.parquet"))
    columns = ["language", "annotator", "text", "sticker_id"]
    authors: dict[str, set[str]] = {language: set() for language in LANGUAGES}
    for batch in source.iter_batches(columns=["language", "annotator"], batch_size=BATCH, use_threads=False):
        for language in LANGUAGES:
            mine = pc.filter(batch.column("annotator"), pc.equal(batch.column("language"), language))
            authors[language].update(a for a in pc.unique(mine.drop_null()).to_pylist())
    tests = {language: author_in_test(sorted(found)) for language, found in authors.items()}
    writers, counts = {}, {}
    try:
        for language in LANGUAGES:
            counts[language] = {"authors_train": len(authors[language]) - len(tests[language]),
                                "authors_test": len(tests[language])}
            (folder / data_file("persrv", language, "x")).parent.mkdir(parents=True, exist_ok=True)
            for split in ("train", "test"):
                writers[language, split] = (
                    TypedJsonLines(folder / "persrv" / language / f"{split}.jsonl"),
                    pq.ParquetWriter(str(folder / data_file("persrv", language, split)), PERSRV_SCHEMA,
                                     compression="zstd"))
        for batch in source.iter_batches(columns=columns, batch_size=BATCH, use_threads=False):
            table = pa.Table.from_batches([batch])
            table = table.filter(pc.is_valid(table["annotator"]))
            for language in LANGUAGES:
                mine = table.filter(pc.equal(table["language"], language))
                if not mine.num_rows:
                    continue
                in_test = pc.is_in(mine["annotator"], value_set=pa.array(sorted(tests[language]), pa.string()))
                for split, mask in (("test", in_test), ("train", pc.invert(in_test))):
                    rows = mine.filter(mask)
                    if not rows.num_rows:
                        continue
                    out = pa.Table.from_arrays([rows["annotator"], rows["text"], rows["sticker_id"]],
                                               schema=PERSRV_SCHEMA)
                    jsonl, parquet = writers[language, split]
                    parquet.write_table(out)
                    for row in out.to_pylist():
                        jsonl.write(row)
    finally:
        for jsonl, parquet in writers.values():
            jsonl.close()
            parquet.close()
    for language in LANGUAGES:
        for split in ("train", "test"):
            counts[language][f"{split}_rows"] = writers[language, split][0].rows
    return counts


class Pseudonyms:
    """The export's keyed pseudonyms ("player", id) and ("round", id), computed once each (HMACs add up
    over millions of rows): players are few, rounds come in runs."""

    def __init__(self, of_player, of_round) -> None:
        from functools import lru_cache

        self.player = lru_cache(maxsize=None)(of_player)
        self.round = lru_cache(maxsize=1 << 16)(of_round)

    def __call__(self, kind: str, value: int | None) -> str | None:
        if value is None:
            return None
        return self.player(value) if kind == "player" else self.round(value)


def write_evidence(db: Engine, folder: Path, settings, pseudonym: Pseudonyms) -> dict:
    """Every file of this module, core.export_judgments and core.export_images; what metrics.json and
    stats.json say about them, per language. queries.parquet and beir-stickers/ must be written."""
    from core.export_images import write_images
    from core.export_judgments import write_judgments

    pool = pa.default_memory_pool()

    def phase(result):
        pool.release_unused()  # what Arrow freed goes back now, not on its allocator's schedule: peak memory
        return result

    judgments = phase(write_judgments(db, folder, settings, pseudonym))
    contexts = phase(write_contexts(db, folder, settings, pseudonym))
    everything = phase(write_all_queries(db, folder, settings, pseudonym))
    persrv = phase(write_persrv(folder))
    images = phase(write_images(db, folder, settings))
    (folder / EVIDENCE_NOTE).write_text(evidence_note(), encoding="utf-8")
    return {"grid_retrieval": {language: judgments.grid_metrics(language) for language in LANGUAGES},
            "files": {"judgments": judgments.jsonl.rows, "negatives": judgments.negatives.rows,
                      "contexts": contexts, "all_queries": everything, "persrv": persrv, "images": images}}


EVIDENCE_NOTE = "EVIDENCE.md"


def evidence_card(evidence: dict) -> str:
    """The card's section on the game's own evidence: what each file is, and the grid figures of the
    people and the partner models who answered (metrics.json `grid_retrieval`)."""
    files = evidence["files"]
    rows = []
    for language, figures in evidence["grid_retrieval"].items():
        for kind, result in figures.items():
            if kind == "protocol" or not result.get("tasks"):
                continue
            n = result["grid_size"]
            rows.append(f"| {language} | {kind} | {result['tasks']} | {n} | {result[f'recall_{n}@1']} | "
                        f"{result[f'recall_{n}@3']} | {result['map']} |")
    table = ("| lang | retriever | tasks | grid | R@1 | R@3 | MAP |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows)
             if rows else "No retrieval task was answered yet.")
    return f"""## The game's own evidence

Every answered retrieval task is a relevance judgment: a person (or a partner model, `retriever_kind` =
`model`) saw these queries and this grid of the target and its look-alikes, and picked stickers in this
order. `judgments` has one row per task ({files["judgments"]} here), human and gold alike, with the grid,
the picks, the queries shown, the retriever and the labeler (pseudonymous), the round and the setting
(`private`, or `group` for a race in a group chat). From them: graded qrels (`judgments_qrels`, and
`judgments/<lang>/qrels.trec`: found at rank 1/2/3 is grade 3/2/1, a miss a judged 0) and explicit
negatives (`judgments_negatives`: every candidate seen and not picked, and the ones picked wrongly).
`contexts` has each label round's chat context as shown (its U-Sticker conversation file and message ids)
and the taken queries it showed as taboo (`taboo_shown`; null for rounds from before it was recorded).
`all` has every submitted query, missed, pending and discarded ones too, flagged with `status`, `usable`
and `review_decision` (the other configs keep only usable ones). `persrv_<lang>` has `userid, query, docid`
rows split so that each author is on one side only. `stickers` has the sticker files (an Image feature for
PNG/WEBP/GIF, bytes for WEBM/TGS, with format, sha256 and size), `images/` the same files for
`beir-stickers/` (`metadata.image`) and the `mteb_<lang>_*` text-to-image layout. EVIDENCE.md describes
every field. `sticktionary evaluate` runs BM25 and a dense model on the same grids from the same queries.

Recall_n@K and MAP over the grid shown (n candidates, one relevant), as in DSTC10-MOD:

{table}
"""


def evidence_note() -> str:
    """EVIDENCE.md: what the evidence files hold, field by field (the card lists their configs)."""
    from core import export_images, export_judgments

    def table(schema, docs) -> str:
        return "\n".join(["| field | type | meaning |", "|---|---|---|"] + [
            f"| `{f.name}` | {f.type} | {docs.get(f.name, '')} |" for f in schema])

    sections = [
        "# The game's own evidence", "",
        "Besides the usable queries, this export holds what the game saw. Loading: "
        "`load_dataset(path, \"judgments\")` (likewise `judgments_negatives`, `judgments_qrels`, `contexts`, `all`, "
        "`persrv_en`, `persrv_zh`, `stickers`, `mteb_<lang>_{corpus,queries,qrels}`).", "",
        "## Judgments", "", export_judgments.__doc__.strip(), "", table(export_judgments.JUDGMENT_SCHEMA,
                                                                    export_judgments.JUDGMENT_FIELD_DOCS), "",
        "## Contexts, every query, PerSRV", "", __doc__.strip(), "",
        table(CONTEXT_SCHEMA, CONTEXT_FIELD_DOCS), "",
        f"`all` has the fields of the query records, `status` being one of {ALL_STATUS_DOCS}, and `usable` true "
        "exactly for the queries of the default config.", "",
        "## Sticker images", "", export_images.__doc__.strip(), "",
    ]
    return "\n".join(sections) + "\n"
