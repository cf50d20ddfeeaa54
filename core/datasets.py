"""StickerQueries in and out of the database.

Import: each row's queries become validated seed queries of that sticker and language (the
sticker row is created when the file name is new). Export: the queries that count as ground
truth — retrieval-validated, or accepted or corrected by a moderator, and seeds — of players who
have not withdrawn consent, one row per sticker ordered by sticker id, queries in collection order.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import groupby
from pathlib import Path

from sqlalchemy import Engine, or_, update
from sqlmodel import col, select

from core.search_log import record_search_change, search_tokens
from core.text import normalize_query, seed_query_problem
from storage.db import insert_ignoring_conflicts, is_postgres, session_scope
from storage.models import USABLE_QUERY_STATUSES, Player, Query, QuerySource, QueryStatus, Sticker, utcnow
from storage.sticker_queries import StickerQueriesFormatError, read_release_rows, write_sticker_queries
from storage.usticker import sticker_format


def import_sticker_queries(db: Engine, csv_path: Path, language: str) -> dict[str, int]:
    """Idempotent: a query already stored for that sticker and language (same text) is not added.
    All or nothing: the whole file is read and checked before anything is written, and a file
    with one bad row or query (StickerQueriesFormatError) adds nothing."""
    rows = list(read_release_rows(csv_path))
    quoted = {key for key, _, quoted in rows if quoted}
    for line, (key, queries, _) in enumerate(rows, start=2):
        for text in queries:
            problem = seed_query_problem(text)
            if problem:
                raise StickerQueriesFormatError(f"{csv_path}: sticker {key} (row {line}): {problem}: {text[:40]!r}")
    now = utcnow()
    added = 0
    with session_scope(db) as session:
        insert_ignoring_conflicts(session, Sticker.__table__, [
            {"key": key, "file_path": f"stickers/{key}", "format": sticker_format(key) or "png", "created_at": now}
            for key, _, _ in rows], ["key"])
        ids = {}
        keys = [key for key, _, _ in rows]
        for start in range(0, len(keys), 500):
            ids.update(session.exec(select(Sticker.key, Sticker.id).where(
                col(Sticker.key).in_(keys[start:start + 500]))).all())
        existing = {(s, t) for s, t in session.exec(select(Query.sticker_id, Query.text).where(
            Query.language == language, col(Query.sticker_id).in_(list(ids.values()))))}
        new = []
        for key, queries, _ in rows:
            for text in queries:
                if (ids[key], text) in existing:
                    continue
                existing.add((ids[key], text))
                new.append(Query(sticker_id=ids[key], language=language, text=text,
                                 normalized_text=normalize_query(text), search_tokens=search_tokens(text),
                                 source=QuerySource.SEED, release_quoted=True if key in quoted else None,
                                 status=QueryStatus.VALIDATED, created_at=now, validated_at=now))
        session.add_all(new)
        if quoted:  # seeds imported before their rows' quoting was kept
            session.execute(update(Query).where(
                Query.language == language, Query.source == QuerySource.SEED,
                col(Query.sticker_id).in_([ids[key] for key in quoted])).values(release_quoted=True))
        record_search_change(session, language, {query.sticker_id for query in new}, "imported")
        added = len(new)
    return {"stickers": len(rows), "queries_added": added}


def consenting_usable(language: str):
    """The dataset filter: usable queries of one language, of players who have not withdrawn consent."""
    return Query.language == language, col(Query.status).in_(USABLE_QUERY_STATUSES), consenting_authors()


def consenting_authors():
    """Seed queries, and queries of players who have not withdrawn consent."""
    withdrawn = select(Player.id).where(col(Player.consent_withdrawn_at).is_not(None))
    return or_(col(Query.author_id).is_(None), col(Query.author_id).not_in(withdrawn))


def release_order(db: Engine):
    """StickerQueries rows are ordered by code point; PostgreSQL's default collation would not be."""
    return col(Sticker.key).collate("C") if is_postgres(db) else col(Sticker.key)


def dataset_rows(db: Engine, language: str) -> Iterator[tuple[str, list[str]]]:
    """(sticker_id, queries) in release order, streamed sticker by sticker."""
    for key, queries, _ in release_rows(db, language):
        yield key, queries


def release_rows(db: Engine, language: str) -> Iterator[tuple[str, list[str], bool]]:
    """(sticker_id, queries, quoted) in release order: `quoted` when an imported release row quoted
    a field that needed no quotes (storage.sticker_queries), so that the row comes out as it went in."""
    statement = (
        select(Sticker.key, Query.text, Query.corrected_text, Query.release_quoted)
        .join(Sticker, Sticker.id == Query.sticker_id)
        .where(*consenting_usable(language))
        .order_by(release_order(db), Query.id)
    )
    with db.connect() as connection:
        rows = connection.execution_options(yield_per=5000).execute(statement)
        for key, group in groupby(rows, key=lambda row: row[0]):
            group = list(group)
            yield key, [corrected or text for _, text, corrected, _ in group], any(q for *_, q in group)


def export_sticker_queries(db: Engine, language: str, out: Path) -> int:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_sticker_queries(out, release_rows(db, language))
