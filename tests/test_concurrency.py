"""Races that must resolve in the database: run on both backends, with real threads."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import timedelta

import pytest
from sqlalchemy import event, text, update
from sqlmodel import Session, select

from core.game import Game, GameError, context_priority
from core.search import SearchIndexes
from storage.models import (
    ChatContext,
    LabelRound,
    OutboxMessage,
    Player,
    PlaySession,
    Prize,
    Query,
    QueryStatus,
    RetrievalTask,
    Review,
    RoundStatus,
    ScoreEvent,
    TaskStatus,
    utcnow,
)
from tests.helpers import labeled_round, make_player, make_world


def test_many_sessions_submitting_the_same_ranking_award_exactly_once(db, settings):
    game = make_world(db, settings)
    alice, bob = make_player(game, 1), make_player(game, 2)
    labeled_round(game, alice)
    task = game.assignment.next_task(bob, prefer="retriever")
    with Session(db) as session:
        target = session.get(RetrievalTask, task.task_id).sticker_id

    def submit(_):
        try:
            game.retrieval.submit_ranking(bob, task.task_id, [target])
            return "ok"
        except GameError as error:
            return error.code

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(submit, range(16)))
    assert results.count("ok") == 1
    assert set(results) == {"ok", "task_closed"}
    with Session(db) as session:
        events = session.exec(select(ScoreEvent)).all()
    assert sorted((e.player_id, e.points) for e in events) == sorted([(alice, 3), (bob, 3)])


def test_concurrent_next_task_calls_give_one_player_one_task(db, settings):
    game = make_world(db, settings)
    player = make_player(game, 1)
    with ThreadPoolExecutor(max_workers=6) as pool:
        tasks = list(pool.map(lambda _: game.assignment.next_task(player, prefer="labeler"), range(12)))
    assert len({t.round_id for t in tasks}) == 1


def test_two_retrievers_never_overbook_a_round(db, settings):
    settings.rules.retrievals_per_round = 1
    game = make_world(db, settings)
    alice = make_player(game, 1)
    labeled_round(game, alice)
    retrievers = [make_player(game, 10 + i) for i in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        tasks = list(pool.map(lambda p: game.assignment.next_task(p, prefer="retriever"), retrievers))
    with Session(db) as session:
        real = [t for t in tasks if t and t.role == "retriever"
                and not session.get(RetrievalTask, t.task_id).is_gold]
    assert len(real) == 1


# ---------------------------------------------------------------- deterministic races on PostgreSQL
#
# Each test below forces one interleaving: the first call runs up to its COMMIT and is held there,
# its writes done and its row locks held; the second call then runs until it waits for one of those
# locks (or ends); then the first commits and the second goes on. SQLite serialises writers, so
# these interleavings only exist on PostgreSQL.

def on_postgres(test):
    return pytest.mark.postgres(pytest.mark.parametrize("db", ["postgres"], indirect=True)(test))


def _lock_waiters(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )).scalar_one()


def _wait_until_waiting(engine, future, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not future.done() and _lock_waiters(engine) == 0:
        assert time.monotonic() < deadline, "the second call neither waited for a lock nor ended"
        time.sleep(0.01)


def race(engine, first, second, timeout: float = 15.0, at: str | None = None):
    """Hold `first` just before its COMMIT (or before its first statement that starts with `at`)
    while `second` runs into its locks; returns both futures."""
    reached, release = threading.Event(), threading.Event()
    holder: dict[str, int] = {}

    def hold(_connection, *statement):
        if at is not None and not statement[1].lstrip().upper().startswith(at.upper()):
            return
        if threading.get_ident() == holder.get("thread") and not reached.is_set():
            reached.set()
            release.wait(timeout)

    def run_first():
        holder["thread"] = threading.get_ident()
        return first()

    hook = "commit" if at is None else "before_cursor_execute"
    event.listen(engine, hook, hold)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            held = pool.submit(run_first)
            try:
                deadline = time.monotonic() + timeout
                while not reached.wait(0.01):
                    if held.done():
                        held.result()  # raises what the first call raised
                        raise AssertionError("the first call never reached its hold point")
                    assert time.monotonic() < deadline, "the first call never reached its hold point"
                racing = pool.submit(second)
                _wait_until_waiting(engine, racing, timeout)
            finally:
                release.set()
            wait([held, racing], timeout=timeout)
            return held, racing
    finally:
        event.remove(engine, hook, hold)


def _later(game, hours: float = 2):
    """The same game as the expiry job sees it, `hours` later."""
    return Game.open(game.db.engine, game.settings, indexes=SearchIndexes(), clock=lambda: utcnow() + timedelta(hours=hours))


def _retrieval(game, db, player_id):
    task = game.assignment.next_task(player_id, prefer="retriever")
    assert task.role == "retriever"
    with Session(db) as session:
        return task, session.get(RetrievalTask, task.task_id)


@on_postgres
def test_expiry_never_overwrites_an_answered_task(db, settings):
    game = make_world(db, settings)
    alice, bob = make_player(game, 1), make_player(game, 2)
    round_id = labeled_round(game, alice)
    task, stored = _retrieval(game, db, bob)
    answered, expired = race(db, lambda: game.retrieval.submit_ranking(bob, task.task_id, [stored.sticker_id]),
                             lambda: _later(game).expiry.expire_abandoned())
    assert answered.result().hit_rank == 1
    assert expired.result() == {"rounds": 0, "tasks": 0, "notices_released": 0}
    with Session(db) as session:
        assert session.get(RetrievalTask, task.task_id).status == TaskStatus.ANSWERED
        # the round's slot stays taken: the answered task is not offered again
        assert session.get(LabelRound, round_id).retrieval_count == 1


@on_postgres
def test_expiry_never_touches_a_submitted_round_or_its_queries(db, settings):
    game = make_world(db, settings)
    alice = make_player(game, 1)
    work = game.assignment.next_task(alice, prefer="labeler")
    game.labeling.add_query(alice, work.round_id, "happy dance")
    submitted, expired = race(db, lambda: game.labeling.submit_round(alice, work.round_id),
                              lambda: _later(game).expiry.expire_abandoned())
    assert submitted.result().query_count == 1
    assert expired.result() == {"rounds": 0, "tasks": 0, "notices_released": 0}
    with Session(db) as session:
        assert session.get(LabelRound, work.round_id).status == RoundStatus.SUBMITTED
        statuses = session.exec(select(Query.status).where(Query.label_round_id == work.round_id)).all()
    assert statuses == [QueryStatus.PENDING]


@on_postgres
def test_expiry_leaves_no_draft_behind_on_the_round_it_closes(db, settings):
    game = make_world(db, settings)
    alice = make_player(game, 1)
    work = game.assignment.next_task(alice, prefer="labeler")
    added, expired = race(db, lambda: game.labeling.add_query(alice, work.round_id, "happy dance"),
                          lambda: _later(game).expiry.expire_abandoned())
    added.result()
    assert expired.result() == {"rounds": 1, "tasks": 0, "notices_released": 0}
    with Session(db) as session:
        assert session.get(LabelRound, work.round_id).status == RoundStatus.EXPIRED
        assert session.exec(select(Query).where(Query.label_round_id == work.round_id)).all() == []


@on_postgres
def test_two_concurrent_hits_count_two_retrievers_and_pay_the_resonance_bonus(db, settings):
    game = make_world(db, settings)
    alice, bob, carol = make_player(game, 1), make_player(game, 2), make_player(game, 3)
    round_id = labeled_round(game, alice)
    bob_task, target = _retrieval(game, db, bob)
    carol_task, _ = _retrieval(game, db, carol)
    first, second = race(db, lambda: game.retrieval.submit_ranking(bob, bob_task.task_id, [target.sticker_id]),
                         lambda: game.retrieval.submit_ranking(carol, carol_task.task_id, [target.sticker_id]))
    assert first.result().validated_query_ids and not second.result().validated_query_ids  # validated once
    with Session(db) as session:
        query = session.exec(select(Query).where(Query.label_round_id == round_id)).one()
        assert (query.hit_count, query.status) == (2, QueryStatus.VALIDATED)
        bonus = session.exec(select(ScoreEvent).where(ScoreEvent.reason == "resonance")).all()
    assert [(e.player_id, e.query_id) for e in bonus] == [(alice, query.id)]


@on_postgres
def test_a_hit_never_overrides_a_moderators_concurrent_discard(db, settings):
    game = make_world(db, settings)
    alice, bob, carol, moderator = (make_player(game, i) for i in (1, 2, 3, 4))
    game.players.set_moderator(moderator)
    round_id = labeled_round(game, alice)
    bob_task, target = _retrieval(game, db, bob)
    game.retrieval.submit_ranking(bob, bob_task.task_id, [next(c for c in target.candidate_ids if c != target.sticker_id)])
    carol_task, _ = _retrieval(game, db, carol)
    with Session(db) as session:
        query_id = session.exec(select(Query.id).where(Query.label_round_id == round_id)).one()
    discarded, hit = race(db, lambda: game.moderation.discard_query(moderator, query_id),
                          lambda: game.retrieval.submit_ranking(carol, carol_task.task_id, [target.sticker_id]))
    assert discarded.result().status == QueryStatus.DISCARDED
    assert hit.result().validated_query_ids == []
    with Session(db) as session:
        assert session.get(Query, query_id).status == QueryStatus.DISCARDED


@on_postgres
def test_two_labelers_submitting_on_one_context_are_both_counted(db, settings):
    game = make_world(db, settings, stickers=1)
    alice, bob = make_player(game, 1), make_player(game, 2)
    rounds = {}
    for player, words in ((alice, "happy dance"), (bob, "so excited")):
        rounds[player] = game.assignment.next_task(player, prefer="labeler").round_id
        game.labeling.add_query(player, rounds[player], words)
    first, second = race(db, lambda: game.labeling.submit_round(alice, rounds[alice]),
                         lambda: game.labeling.submit_round(bob, rounds[bob]))
    first.result(), second.result()
    with Session(db) as session:
        context = session.exec(select(ChatContext)).one()
    assert (context.label_count, context.skip_count, context.priority) == (2, 0, context_priority(2, 0))


@on_postgres
def test_a_submit_and_a_skip_on_one_context_keep_its_priority_right(db, settings):
    game = make_world(db, settings, stickers=1)
    alice, bob = make_player(game, 1), make_player(game, 2)
    alice_round = game.assignment.next_task(alice, prefer="labeler").round_id
    game.labeling.add_query(alice, alice_round, "happy dance")
    bob_round = game.assignment.next_task(bob, prefer="labeler").round_id
    first, second = race(db, lambda: game.labeling.submit_round(alice, alice_round),
                         lambda: game.labeling.skip_round(bob, bob_round))
    first.result(), second.result()
    with Session(db) as session:
        context = session.exec(select(ChatContext)).one()
    assert (context.label_count, context.skip_count, context.priority) == (1, 1, context_priority(1, 1))


@on_postgres
def test_pause_racing_a_skip_releases_the_rounds_slot_once(db, settings):
    game = make_world(db, settings)
    alice, bob, carol = make_player(game, 1), make_player(game, 2), make_player(game, 3)
    round_id = labeled_round(game, alice)
    bob_task, _ = _retrieval(game, db, bob)
    _retrieval(game, db, carol)
    skipped, paused = race(db, lambda: game.retrieval.skip_task(bob, bob_task.task_id), lambda: game.players.pause(bob))
    skipped.result(), paused.result()
    with Session(db) as session:
        assert session.get(RetrievalTask, bob_task.task_id).status == TaskStatus.SKIPPED
        assert session.get(LabelRound, round_id).retrieval_count == 1  # carol's task still holds its slot


@on_postgres
def test_done_right_after_a_pick_submits_that_pick(db, settings):
    game = make_world(db, settings)
    alice, bob = make_player(game, 1), make_player(game, 2)
    labeled_round(game, alice)
    task, stored = _retrieval(game, db, bob)
    game.retrieval.toggle_pick(bob, task.task_id, 1)
    toggled, done = race(db, lambda: game.retrieval.toggle_pick(bob, task.task_id, 2),
                         lambda: game.retrieval.submit_drafted_ranking(bob, task.task_id))
    assert toggled.result().picks == stored.candidate_ids[:2]
    done.result()
    with Session(db) as session:
        assert session.get(RetrievalTask, task.task_id).picks == stored.candidate_ids[:2]


@on_postgres
def test_first_contact_twice_at_once_makes_one_player(db, settings):
    game = make_world(db, settings)
    first, second = race(db, lambda: game.players.register(77, "first", "en"),
                         lambda: game.players.register(77, "second", "en"))
    assert first.result().id == second.result().id
    with Session(db) as session:
        assert len(session.exec(select(Player).where(Player.telegram_user_id == 77)).all()) == 1


@on_postgres
def test_a_finished_task_adds_to_its_play_session_in_sql(db, settings):
    """Another writer's uncommitted increment of the session is not overwritten by the engine's."""
    game = make_world(db, settings)
    alice, bob = make_player(game, 1), make_player(game, 2)
    labeled_round(game, alice)
    labeled_round(game, bob)
    task, stored = _retrieval(game, db, bob)
    with db.connect() as other, ThreadPoolExecutor(max_workers=1) as pool:
        other.execute(update(PlaySession).where(PlaySession.player_id == bob)
                      .values(task_count=PlaySession.task_count + 1))
        submitted = pool.submit(game.retrieval.submit_ranking, bob, task.task_id, [stored.sticker_id])
        _wait_until_waiting(db, submitted)
        other.commit()
        submitted.result(timeout=15)
    with Session(db) as session:
        assert session.exec(select(PlaySession.task_count).where(PlaySession.player_id == bob)).one() == 3


@on_postgres
def test_pause_and_skip_of_one_task_take_locks_in_one_order(db, settings):
    """pause locks the player, then the task; skip_task must too, or each waits for the other."""
    game = make_world(db, settings)
    alice, bob = make_player(game, 1), make_player(game, 2)
    labeled_round(game, alice)
    task, _ = _retrieval(game, db, bob)
    paused, skipped = race(db, lambda: game.players.pause(bob), lambda: game.retrieval.skip_task(bob, task.task_id),
                           at="UPDATE retrievaltask")
    paused.result()
    with pytest.raises(GameError) as error:
        skipped.result()
    assert error.value.code == "task_closed"


@on_postgres
def test_pause_racing_the_expiry_job_releases_the_slot_once(db, settings):
    game = make_world(db, settings)
    alice, bob, carol = make_player(game, 1), make_player(game, 2), make_player(game, 3)
    round_id = labeled_round(game, alice)
    bob_task, _ = _retrieval(game, db, bob)
    carol_task, target = _retrieval(game, db, carol)
    game.retrieval.submit_ranking(carol, carol_task.task_id, [target.sticker_id])
    paused, expired = race(db, lambda: game.players.pause(bob), lambda: _later(game).expiry.expire_abandoned())
    paused.result()
    assert expired.result() == {"rounds": 0, "tasks": 0, "notices_released": 0}
    with Session(db) as session:
        assert session.get(RetrievalTask, bob_task.task_id).status == TaskStatus.EXPIRED
        assert session.get(LabelRound, round_id).retrieval_count == 1  # carol's answered task keeps its slot


@on_postgres
def test_two_quick_picks_both_stay_on_the_grid(db, settings):
    game = make_world(db, settings)
    alice, bob = make_player(game, 1), make_player(game, 2)
    labeled_round(game, alice)
    task, stored = _retrieval(game, db, bob)
    first, second = race(db, lambda: game.retrieval.toggle_pick(bob, task.task_id, 1),
                         lambda: game.retrieval.toggle_pick(bob, task.task_id, 2))
    assert second.result().picks == stored.candidate_ids[:2]
    with Session(db) as session:
        assert session.get(RetrievalTask, task.task_id).picks == stored.candidate_ids[:2]


# The engine calls below already resolved their race in the database before this change; these keep it so.

@on_postgres
def test_the_same_suggestion_twice_at_once_is_taken_once(db, settings):
    game = make_world(db, settings)
    alice, bob, carol = make_player(game, 1), make_player(game, 2), make_player(game, 3)
    labeled_round(game, alice)
    bob_task, target = _retrieval(game, db, bob)
    carol_task, _ = _retrieval(game, db, carol)
    first, second = race(db, lambda: game.retrieval.suggest_query(bob, bob_task.task_id, target.sticker_id, "pure joy"),
                         lambda: game.retrieval.suggest_query(carol, carol_task.task_id, target.sticker_id, "Pure joy"))
    assert first.result().status == QueryStatus.PENDING
    with pytest.raises(GameError) as error:
        second.result()
    assert error.value.code == "taboo"


@on_postgres
def test_two_moderators_deciding_one_query_at_once_decide_it_once(db, settings):
    game = make_world(db, settings)
    alice, bob, first_moderator, second_moderator = (make_player(game, i) for i in (1, 2, 3, 4))
    for moderator in (first_moderator, second_moderator):
        game.players.set_moderator(moderator)
    round_id = labeled_round(game, alice)
    task, target = _retrieval(game, db, bob)
    game.retrieval.submit_ranking(bob, task.task_id, [next(c for c in target.candidate_ids if c != target.sticker_id)])
    with Session(db) as session:
        query_id = session.exec(select(Query.id).where(Query.label_round_id == round_id)).one()
    accepted, discarded = race(db, lambda: game.moderation.accept_query(first_moderator, query_id),
                               lambda: game.moderation.discard_query(second_moderator, query_id))
    assert accepted.result().status == QueryStatus.ACCEPTED
    with pytest.raises(GameError) as error:
        discarded.result()
    assert error.value.code == "already_reviewed"
    with Session(db) as session:
        assert session.get(Query, query_id).status == QueryStatus.ACCEPTED
        assert len(session.exec(select(Review).where(Review.query_id == query_id)).all()) == 1


@on_postgres
def test_two_prize_tallies_at_once_award_each_prize_once(db, settings):
    game = make_world(db, settings)
    alice, bob = make_player(game, 1), make_player(game, 2)
    labeled_round(game, alice)
    task, target = _retrieval(game, db, bob)
    game.retrieval.submit_ranking(bob, task.task_id, [target.sticker_id])
    now = utcnow()
    start, end = now - timedelta(days=1), now + timedelta(minutes=1)
    first, second = race(db, lambda: game.prizes.tally(start, end, "day"),
                         lambda: game.prizes.tally(start, end, "day"))
    assert first.result()["en"]["new"] + second.result()["en"]["new"] == first.result()["en"]["top"] == 2
    with Session(db) as session:
        assert len(session.exec(select(Prize)).all()) == 2
        assert len(session.exec(select(OutboxMessage).where(OutboxMessage.kind == "prizes_tallied")).all()) == 1
