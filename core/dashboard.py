"""What the live dashboard shows moderators and researchers, read from the database: queries
collected over time, the review queue, the period's leaderboards, Table 3 statistics and the
latest export's metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from core.datasets import dataset_rows
from core.game.standings import Standings
from core.partner_figures import partner_figures
from core.research import QueryStatistics
from core.text import tokenize
from core.vocabulary import LANGUAGES
from storage.db import Database, is_postgres
from storage.export_files import latest_export
from storage.models import ChatContext, ContextStatus, Query, QuerySource, QueryStatus, utcnow
from storage.settings import Settings

# Bucket widths the timeline chooses from, narrowest first: a live session shows minutes, a
# long-running game days.
BUCKETS = (("minute", timedelta(minutes=1)), ("hour", timedelta(hours=1)), ("day", timedelta(days=1)))
MAX_BUCKETS = 120


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _truncate(moment: datetime, unit: str) -> datetime:
    moment = _as_utc(moment)
    if unit == "minute":
        return moment.replace(second=0, microsecond=0)
    if unit == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _bucket_column(db: Engine, unit: str):
    """The start of a query's bucket, computed by the database (one row per bucket comes back)."""
    if is_postgres(db):
        return func.date_trunc(unit, func.timezone("UTC", Query.created_at))
    pattern = {"minute": "%Y-%m-%d %H:%M:00", "hour": "%Y-%m-%d %H:00:00", "day": "%Y-%m-%d 00:00:00"}[unit]
    return func.strftime(pattern, Query.created_at)


def queries_over_time(db: Engine, now: datetime | None = None) -> dict:
    """Queries players wrote (labelers and suggestions; not the imported seeds), per language and
    bucket, with the running total: {"unit", "buckets": [iso…], "languages": {en: {"new", "total"}}}."""
    now = _as_utc(now or utcnow())
    collected = col(Query.source).in_((QuerySource.LABELER, QuerySource.SUGGESTION))
    with Session(db) as session:
        first = session.exec(select(func.min(Query.created_at)).where(collected)).one()
        if first is None:
            return {"unit": "minute", "buckets": [], "languages": {language: {"new": [], "total": []}
                                                                   for language in LANGUAGES}}
        span = now - _as_utc(first)
        unit, width = next(((u, w) for u, w in BUCKETS if span / w < MAX_BUCKETS), BUCKETS[-1])
        bucket = _bucket_column(db, unit).label("bucket")
        rows = session.exec(select(bucket, Query.language, func.count()).where(collected)
                            .group_by(bucket, Query.language)).all()
    counts: dict[tuple[datetime, str], int] = {}
    for start, language, n in rows:
        start = datetime.fromisoformat(start) if isinstance(start, str) else start
        counts[(_truncate(start, unit), language)] = n
    # One empty bucket first: the running total starts from nothing.
    start, end = _truncate(_as_utc(first), unit) - width, _truncate(now, unit)
    steps = max(0, min(int((end - start) / width), MAX_BUCKETS * 24))
    moments = [start + width * i for i in range(steps + 1)]
    languages = {}
    for language in LANGUAGES:
        new = [counts.get((moment, language), 0) for moment in moments]
        total, running = [], 0
        for n in new:
            running += n
            total.append(running)
        languages[language] = {"new": new, "total": total}
    return {"unit": unit, "buckets": [m.isoformat() for m in moments], "languages": languages}


def recent_queries(db: Engine, limit: int = 12) -> list[dict]:
    """The newest queries players wrote, with their status (drafts included: the live view)."""
    collected = col(Query.source).in_((QuerySource.LABELER, QuerySource.SUGGESTION))
    with Session(db) as session:
        rows = session.exec(select(Query).where(collected).order_by(col(Query.id).desc()).limit(limit)).all()
        return [{"id": q.id, "language": q.language, "text": q.final_text, "status": str(q.status),
                 "source": str(q.source), "created_at": _as_utc(q.created_at).isoformat()} for q in rows]


def review_queue(db: Engine) -> dict:
    """Queries by status (needs_review is the moderators' queue) and chat contexts awaiting review."""
    with Session(db) as session:
        rows = session.exec(select(Query.status, func.count()).group_by(Query.status)).all()
        waiting = session.exec(select(func.count()).select_from(ChatContext)
                               .where(ChatContext.status == ContextStatus.CANDIDATE)).one()
    counts = {str(status): 0 for status in QueryStatus}
    counts.update({str(status): n for status, n in rows})
    return {"queries": counts, "needs_review": counts[QueryStatus.NEEDS_REVIEW], "contexts_waiting": waiting}


def query_statistics(db: Engine) -> dict:
    """Table 3 of the paper (stickers, queries, queries per sticker, words, …) per language, over
    the dataset as it stands now (the same queries an export would release)."""
    tables = {}
    for language in LANGUAGES:
        statistics = QueryStatistics(language)
        for _, queries in dataset_rows(db, language):
            statistics.add(queries, [tokenize(q) for q in queries])
        tables[language] = statistics.table()
    return tables


def leaderboards(db: Engine, settings: Settings, period: timedelta = timedelta(days=7), limit: int = 10) -> dict:
    """The period's leaderboard per language, as the bot's /top shows it."""
    standings = Standings(Database(db))
    since = standings.clock() - period
    return {language: [{"rank": row.rank, "name": row.nickname, "points": row.points}
                       for row in standings.leaderboard(language, since=since, limit=limit)]
            for language in LANGUAGES}


def latest_metrics(export_dir: Path) -> dict | None:
    """The latest complete export's version and metrics.json, or None before the first export."""
    version = latest_export(Path(export_dir))
    if version is None:
        return None
    metrics = json.loads((Path(export_dir) / version / "metrics.json").read_text(encoding="utf-8"))
    return {"version": version, "generated_at": metrics.get("generated_at"), "languages": metrics.get("languages", {})}


def dashboard(db: Engine, settings: Settings, now: datetime | None = None) -> dict:
    return {"generated_at": _as_utc(now or utcnow()).isoformat(), "timeline": queries_over_time(db, now),
            "recent": recent_queries(db), "review": review_queue(db), "leaderboards": leaderboards(db, settings),
            "statistics": query_statistics(db), "metrics": latest_metrics(settings.exports.export_dir),
            "partners": partner_figures(db)}
