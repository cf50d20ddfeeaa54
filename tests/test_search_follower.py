"""The search index follows the database's change log: across processes, after commit only, in order
(out-of-order commits included), and a restart sees exactly what the running process saw."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from sqlalchemy import insert, text
from sqlmodel import Session, select

from core.datasets import dataset_rows
from core.game import Game
from core.search_follower import SearchFollower
from core.search_log import record_search_change
from core.text import tokenize
from storage.db import is_postgres, make_engine, session_scope
from storage.models import Query, QuerySource, QueryStatus, SearchChange, Sticker
from tests.conftest import ROOT
from tests.helpers import labeled_round, make_player, make_world


def _retrieve_and_hit(game, db, retriever):
    task = game.assignment.next_task(retriever, prefer="retriever")
    with Session(db) as session:
        from storage.models import RetrievalTask
        target = session.get(RetrievalTask, task.task_id).sticker_id
    game.retrieval.submit_ranking(retriever, task.task_id, [target])
    return target


def _add_pending(db, sticker_id: int, words: str, language: str = "en") -> int:
    with session_scope(db) as session:
        query = Query(sticker_id=sticker_id, language=language, text=words, normalized_text=words,
                      source=QuerySource.SEED, status=QueryStatus.PENDING)
        session.add(query)
        session.flush()
        return query.id


def _validate(session, query_id: int) -> Query:
    query = session.get(Query, query_id)
    query.status = QueryStatus.VALIDATED
    session.add(query)
    record_search_change(session, query.language, [query.sticker_id], "validated")
    return query


def _wait_for(condition, seconds: float = 2.0) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(0.02)
    return time.monotonic() - start


def _same_view(first: Game, second: Game, language: str, probes) -> None:
    a, b = first.indexes[language], second.indexes[language]
    assert a.sticker_ids() == b.sticker_ids()
    for probe in probes:
        ids = a.sticker_ids()
        assert np.allclose(a.sticker_scores(probe, ids), b.sticker_scores(probe, ids), rtol=1e-12, atol=1e-12)
        assert a.search(probe, k=10) == b.search(probe, k=10)


def test_a_change_through_one_game_reaches_another_games_search_within_2_s(db, settings):
    """Two engines on one database are two processes as far as the index is concerned: the second
    learns only from the log."""
    first = make_world(db, settings)
    other_engine = make_engine(db.url.render_as_string(hide_password=False))
    try:
        second = Game.open(other_engine, settings)
        alice, bob = make_player(first, 1), make_player(first, 2)
        labeled_round(first, alice, queries=("zebra parade",))
        assert second.previews.preview("en", "zebra parade").hits == []
        target = _retrieve_and_hit(first, db, bob)
        # The committing process sees it at once; the other within the poll interval.
        assert first.search.indexes["en"].search(tokenize("zebra parade")).hits[0].sticker_id == target
        waited = _wait_for(lambda: [h.sticker_id for h in second.previews.preview("en", "zebra parade").hits] == [target])
        assert waited < 2.0
        _same_view(first, second, "en", [["zebra"], ["seed3", "mood"], ["mood"]])
        # And a restart sees exactly the same.
        _same_view(first, Game.open(db, settings), "en", [["zebra"], ["seed3", "mood"], ["mood"]])
    finally:
        other_engine.dispose()


def test_a_change_committed_by_another_process_reaches_a_running_games_search(db, settings, tmp_path):
    game = make_world(db, settings)
    game.follow_search_changes()
    try:
        csv_path = tmp_path / "queries.csv"
        csv_path.write_text('sticker_id,labeled_queries\n1000.png,"walrus moustache, seed0 mood"\n'
                            'brand-new.png,walrus ballet\n', encoding="utf-8")
        index = game.search.indexes["en"]  # held by a caller: the background poll keeps it current
        env = {**os.environ, "STICKTIONARY_DATABASE_URL": db.url.render_as_string(hide_password=False)}
        subprocess.run([sys.executable, "-m", "sticktionary.cli", "data", "import-queries", str(csv_path),
                        "--lang", "en"], check=True, env=env, cwd=ROOT, capture_output=True, timeout=120)
        committed = time.monotonic()
        _wait_for(lambda: len(index.search(["walrus"]).hits) == 2)
        assert time.monotonic() - committed < 2.0
        with Session(db) as session:
            new_id = session.exec(select(Sticker.id).where(Sticker.key == "brand-new.png")).one()
        assert new_id in index and len(index) == 13
        _same_view(game, Game.open(db, settings), "en", [["walrus"], ["mood"], ["seed0"]])
    finally:
        game.close()


def test_a_rollback_leaves_no_phantom_entries(db, settings):
    game = make_world(db, settings)
    with Session(db) as session:
        sticker = session.exec(select(Sticker.id).order_by(Sticker.id)).first()
    query_id = _add_pending(db, sticker, "phantom words")
    with pytest.raises(RuntimeError), session_scope(db) as session:
        _validate(session, query_id)
        session.flush()
        game.search.catch_up()  # another thread catching up meanwhile sees nothing uncommitted
        raise RuntimeError("the transaction fails after recording its change")
    assert game.search.catch_up() == 0
    assert game.previews.preview("en", "phantom").hits == []
    with session_scope(db) as session:
        _validate(session, query_id)
    assert [h.sticker_id for h in game.previews.preview("en", "phantom").hits] == [sticker]


def test_ids_committed_out_of_order_are_not_skipped(db, settings):
    """PostgreSQL: a transaction holding a lower id commits after a higher id was read. SQLite has one
    writer, so there the same order of arrival is made with explicit ids."""
    game = make_world(db, settings)
    with Session(db) as session:
        first, second = session.exec(select(Sticker.id).order_by(Sticker.id)).all()[:2]
    slow_query, fast_query = _add_pending(db, first, "tortoise"), _add_pending(db, second, "hare")
    if is_postgres(db):
        with Session(db) as slow:  # closed (rolled back) even when an assertion fails
            _validate(slow, slow_query)
            slow.flush()  # holds the lower id, not committed
            with session_scope(db) as session:
                _validate(session, fast_query)
            # This process's own commit caught up already; the slow one's id is a gap now.
            assert game.search.gaps and [h.sticker_id for h in game.previews.preview("en", "hare").hits] == [second]
            slow.commit()
    else:
        with session_scope(db) as session:
            high = session.exec(select(SearchChange.id).order_by(SearchChange.id.desc())).first() or 0
            session.get(Query, fast_query).status = QueryStatus.VALIDATED
            session.execute(insert(SearchChange), [dict(id=high + 2, language="en", sticker_id=second,
                                                        reason="validated")])
        game.search.catch_up()
        assert list(game.search.gaps) == [high + 1]
        with session_scope(db) as session:
            session.get(Query, slow_query).status = QueryStatus.VALIDATED
            session.execute(insert(SearchChange), [dict(id=high + 1, language="en", sticker_id=first,
                                                        reason="validated")])
    _wait_for(lambda: [h.sticker_id for h in game.previews.preview("en", "tortoise").hits] == [first])
    assert game.search.gaps == {}
    _same_view(game, Game.open(db, settings), "en", [["tortoise"], ["hare"], ["mood"]])


def test_gaps_that_never_fill_age_out(db, settings):
    now = [1000.0]
    follower = SearchFollower(db, clock=lambda: now[0], gap_seconds=60)
    follower.load()
    follower.gaps = {}
    follower._advance([follower.high_water + 3], now[0])
    assert sorted(follower.gaps) == [follower.high_water - 2, follower.high_water - 1]
    now[0] += 61
    follower.catch_up()
    assert follower.gaps == {}


def test_a_start_up_sees_ids_still_in_flight(db, settings):
    """A change not committed while another process builds its index is picked up once it commits."""
    game = make_world(db, settings)
    with Session(db) as session:
        sticker = session.exec(select(Sticker.id).order_by(Sticker.id)).first()
    query_id = _add_pending(db, sticker, "latecomer")
    if is_postgres(db):
        with Session(db) as slow:
            _validate(slow, query_id)
            slow.flush()
            with session_scope(db) as session:  # a later id commits first
                _validate(session, _add_pending(db, sticker, "early bird"))
            fresh = Game.open(db, settings)
            assert fresh.search.gaps
            slow.commit()
    else:
        fresh = Game.open(db, settings)
        with session_scope(db) as session:
            _validate(session, query_id)
    _wait_for(lambda: [h.sticker_id for h in fresh.previews.preview("en", "latecomer").hits] == [sticker])
    _same_view(game, fresh, "en", [["latecomer"], ["mood"]])


def test_withdrawn_players_queries_leave_the_index_as_they_leave_the_export(db, settings):
    game = make_world(db, settings)
    alice, bob = make_player(game, 1), make_player(game, 2)
    labeled_round(game, alice, queries=("alice special",))
    target = _retrieve_and_hit(game, db, bob)
    assert [h.sticker_id for h in game.previews.preview("en", "alice special").hits] == [target]
    game.players.withdraw_consent(alice)
    assert game.previews.preview("en", "alice special").hits == []
    exported = dict(dataset_rows(db, "en"))
    restarted = Game.open(db, settings)
    for sticker_id in restarted.indexes["en"].sticker_ids():
        with Session(db) as session:
            key = session.get(Sticker, sticker_id).key
        assert restarted.indexes["en"].document(sticker_id) == sorted(
            t for q in exported[key] for t in tokenize(q))
    game.players.give_consent(alice)
    assert [h.sticker_id for h in game.previews.preview("en", "alice special").hits] == [target]
    _same_view(game, Game.open(db, settings), "en", [["alice"], ["mood"]])


def test_moderator_decisions_reach_the_index(db, settings):
    game = make_world(db, settings, stickers=20)
    alice, bob, moderator = make_player(game, 1), make_player(game, 2), make_player(game, 3)
    game.players.set_moderator(moderator)
    labeled_round(game, alice, queries=("kept idea", "dropped idea", "misspeled idea"))
    task = game.assignment.next_task(bob, prefer="retriever")
    with Session(db) as session:
        from storage.models import RetrievalTask
        target = session.get(RetrievalTask, task.task_id).sticker_id
    game.retrieval.submit_ranking(bob, task.task_id, [c.id for c in task.candidates if c.id != target][:2])
    assert game.previews.preview("en", "idea").hits == []
    kept, dropped, misspelled = (item.query.id for item in game.moderation.pending_reviews(moderator))
    game.moderation.accept_query(moderator, kept)
    game.moderation.discard_query(moderator, dropped)
    game.moderation.correct_query(moderator, misspelled, "misspelled idea")
    index = game.indexes["en"]
    assert "kept" in index.document(target) and "misspelled" in index.document(target)
    assert "dropped" not in index.document(target) and "misspeled" not in index.document(target)
    _same_view(game, Game.open(db, settings), "en", [["idea"], ["kept"], ["misspelled"]])


def test_searches_and_applies_run_concurrently(db, settings):
    """Game threads search while changes commit and apply from other threads: no error, and at the
    end every process's view equals a fresh build."""
    game = make_world(db, settings, stickers=30)
    with Session(db) as session:
        stickers = session.exec(select(Sticker.id).order_by(Sticker.id)).all()
    pending = [_add_pending(db, stickers[i % len(stickers)], f"word{i % 7} extra{i}") for i in range(40)]
    stop, errors = threading.Event(), []

    def search():
        try:
            while not stop.is_set():
                game.previews.preview("en", "word3 mood")
                game.indexes["en"].search(["extra5", "word1"], k=5)
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    def poll():
        while not stop.wait(0.005):
            game.search.catch_up()

    threads = [threading.Thread(target=search) for _ in range(3)] + [threading.Thread(target=poll)]
    for thread in threads:
        thread.start()
    try:
        writers = [threading.Thread(target=lambda ids=pending[i::2]: [_commit_validation(db, q) for q in ids])
                   for i in range(2)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    game.search.catch_up()
    _same_view(game, Game.open(db, settings), "en", [["word3"], ["extra5", "word1"], ["mood"]])
    assert len(game.previews.preview("en", "extra39").hits) == 1


def _commit_validation(db, query_id: int) -> None:
    with session_scope(db) as session:
        _validate(session, query_id)


def test_the_log_table_is_in_the_migrations(db):
    with db.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM searchchange")).scalar() == 0
