"""The change log of searchable queries: what every process's search index follows.

A change is recorded in the same transaction as the change itself (a query validated, accepted,
corrected or discarded, a player's consent withdrawn or given back, seed queries imported). The
row names the sticker and language whose document changed; whoever applies it re-reads that
document, so applying is exact and can be repeated. Nothing is applied before commit: when the
transaction commits, the followers of this process over the same database catch up at once
(other processes poll, see core/search_follower.py); when it rolls back, nothing happened.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable
from typing import Protocol

from sqlalchemy import Engine, event, insert, select
from sqlmodel import Session, col

from core.text import tokenize
from storage.models import USABLE_QUERY_STATUSES, Query, SearchChange, utcnow

log = logging.getLogger(__name__)


class ChangeFollower(Protocol):
    def catch_up(self) -> int: ...


_followers: weakref.WeakKeyDictionary[Engine, weakref.WeakSet] = weakref.WeakKeyDictionary()
_followers_guard = threading.Lock()


def follow_commits(engine: Engine, follower: ChangeFollower) -> None:
    """`follower.catch_up()` runs after every commit in this process that recorded a change."""
    with _followers_guard:
        _followers.setdefault(engine, weakref.WeakSet()).add(follower)


def record_search_change(session: Session, language: str, sticker_ids: Iterable[int], reason: str) -> None:
    rows = [dict(language=language, sticker_id=s, reason=reason, created_at=utcnow()) for s in sorted(set(sticker_ids))]
    if not rows:
        return
    session.execute(insert(SearchChange), rows)
    if not session.info.get("search_changed"):
        session.info["search_changed"] = True
        event.listen(session, "after_commit", _after_commit, once=True)
        event.listen(session, "after_rollback", _forget, once=True)


def search_tokens(text: str) -> str:
    """What Query.search_tokens holds for a final text."""
    return " ".join(tokenize(text))


def query_tokens(text: str, corrected: str | None, stored: str | None) -> list[str]:
    """A query's search tokens: the stored ones, or its final text tokenized (queries made usable
    before tokens were stored)."""
    return stored.split() if stored is not None else tokenize(corrected or text)


def record_author_change(session: Session, player_id: int, reason: str) -> None:
    """A player's usable queries enter or leave the searchable set (consent given back or withdrawn)."""
    rows = session.execute(select(Query.language, Query.sticker_id).distinct().where(
        Query.author_id == player_id, col(Query.status).in_(USABLE_QUERY_STATUSES))).all()
    for language in {language for language, _ in rows}:
        record_search_change(session, language, [s for lang, s in rows if lang == language], reason)


def _forget(session: Session) -> None:
    session.info.pop("search_changed", None)


def _after_commit(session: Session) -> None:
    session.info.pop("search_changed", None)
    engine = session.get_bind()
    with _followers_guard:
        followers = list(_followers.get(engine, ()))
    for follower in followers:
        try:
            follower.catch_up()
        except Exception:  # noqa: BLE001 - the commit stands; the follower's poll retries
            log.exception("search index: catching up after a commit failed; the next poll retries")
