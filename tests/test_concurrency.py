"""Races that must resolve in the database: run on both backends, with real threads."""

from concurrent.futures import ThreadPoolExecutor

from sqlmodel import Session, select

from core.engine import GameError
from storage.models import RetrievalTask, ScoreEvent
from tests.helpers import labeled_round, make_player, make_world


def test_many_sessions_submitting_the_same_ranking_award_exactly_once(db, settings):
    game = make_world(db, settings)
    alice, bob = make_player(game, 1), make_player(game, 2)
    labeled_round(game, alice)
    task = game.next_task(bob, prefer="retriever")
    with Session(db) as session:
        target = session.get(RetrievalTask, task.task_id).sticker_id

    def submit(_):
        try:
            game.submit_ranking(bob, task.task_id, [target])
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
        tasks = list(pool.map(lambda _: game.next_task(player, prefer="labeler"), range(12)))
    assert len({t.round_id for t in tasks}) == 1


def test_two_retrievers_never_overbook_a_round(db, settings):
    settings.retrievals_per_round = 1
    game = make_world(db, settings)
    alice = make_player(game, 1)
    labeled_round(game, alice)
    retrievers = [make_player(game, 10 + i) for i in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        tasks = list(pool.map(lambda p: game.next_task(p, prefer="retriever"), retrievers))
    with Session(db) as session:
        real = [t for t in tasks if t and t.role == "retriever"
                and not session.get(RetrievalTask, t.task_id).is_gold]
    assert len(real) == 1
