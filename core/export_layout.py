"""The research export's record schema and where its parquet files lie: what the export writes and
the dataset card describes (both import it from here)."""

from __future__ import annotations

import pyarrow as pa

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
    ("validation", pa.string()),
    ("status", pa.string()),
    ("annotator", pa.string()),
    ("label_round", pa.string()),
    ("shown_to_retrievers", pa.int32()),
    ("retrieved_by", pa.int32()),
    ("resonant", pa.bool_()),
    ("review_decision", pa.string()),
    ("reviewed_at", pa.timestamp("us", tz="UTC")),
    ("created_at", pa.timestamp("us", tz="UTC")),
    ("validated_at", pa.timestamp("us", tz="UTC")),
    ("split", pa.string()),
    ("sticker_split", pa.string()),
])
QUERY_FIELDS = tuple(QUERY_SCHEMA.names)
QUERY_FIELD_DOCS = {
    "query_id": "the query's id in this database (stable across exports)",
    "language": "en or zh",
    "sticker_id": "the sticker's file name, as in the StickerQueries CSVs",
    "sticker_file": "the sticker's path in the sticker archive (U-Sticker's); for a sticker known only from a "
                    "StickerQueries CSV, stickers/<sticker_id>: where its image lies in the StickerQueries release, "
                    "not a file this game stored",
    "sticker_format": "png, gif or webm",
    "text": "the query as released (a moderator's correction where there is one)",
    "original_text": "the player's own text before a correction; null unless the operator exported it",
    "corrected_text": "the moderator's correction, null if none",
    "source": "seed (imported from StickerQueries; players see seeds as taboo and in retrieval tasks, see the "
              "card), labeler (typed in a labeler round) or suggestion (suggested by a retriever)",
    "validation": "seed (imported as is), retrieval_hit (a retriever found the sticker from it), moderator_accept "
                  "or moderator_correct (a moderator reviewed it after a miss)",
    "status": "the game's status: validated, accepted or corrected",
    "annotator": "keyed pseudonym of the player who wrote it; null for seeds",
    "label_round": "keyed pseudonym of the labeler round it was written in; null for seeds and suggestions",
    "shown_to_retrievers": "how many retrieval tasks showed it",
    "retrieved_by": "distinct retrievers who found the sticker from it",
    "resonant": "found by at least the resonance number of distinct retrievers",
    "review_decision": "the last moderator decision on it (accept, correct), null if never reviewed",
    "reviewed_at": "time of that decision (UTC, truncated)",
    "created_at": "when it was written (UTC, truncated); null for seeds, whose release does not say",
    "validated_at": "when it became ground truth (UTC, truncated); null for seeds, validated before their release",
    "split": "train or test in the query-level split (beir/)",
    "sticker_split": "train or test in the sticker-level split (beir-stickers/)",
}
RELEASE_SCHEMA = pa.schema([("sticker_id", pa.string()), ("labeled_queries", pa.string())])
CORPUS_SCHEMA = pa.schema([("_id", pa.string()), ("title", pa.string()), ("text", pa.string())])
BEIR_QUERY_SCHEMA = pa.schema([("_id", pa.string()), ("text", pa.string())])
QRELS_SCHEMA = pa.schema([("query-id", pa.string()), ("corpus-id", pa.string()), ("score", pa.int32())])


def data_file(*parts: str) -> str:
    """Where a config's parquet file lies in the export (relative, POSIX)."""
    return "/".join(("data", *parts)) + ".parquet"
