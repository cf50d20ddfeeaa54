"""The group-round engine on both databases: many closers at once, one winner; a round nobody played
gives its label round's slot back; the group's table counts only its own rounds; a migrated group
keeps its rounds."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

from sqlmodel import Session, select

from core.game import Game
from core.vocabulary import ErrorCode
from offline.demo_pack import load_demo_pack
from storage.models import GroupChat, GroupRound, LabelRound, OutboxMessage, RetrievalTask, ScoreEvent, utcnow
from storage.settings import Settings


def _game(db, **rules) -> Game:
    """`rules`: game rules other than the defaults (settings.rules), e.g. group_round_seconds=5."""
    load_demo_pack(db)
    return Game.open(db, Settings(storage={"database_url": str(db.url)}, rules={"gold_rate": 0.0, **rules},
                                  _env_file=None),
                     rng=random.Random(3))


def _members(game: Game, *users: int) -> list[int]:
    ids = []
    for user in users:
        player = game.players.register(user, f"U{user}").id
        game.players.set_language(player, "en")
        game.players.give_consent(player)
        ids.append(player)
    return ids


def _submitted_round(game: Game, labeler: int) -> int:
    task = game.assignment.next_task(labeler, prefer="labeler")
    game.labeling.add_query(labeler, task.round_id, "first idea")
    game.labeling.submit_round(labeler, task.round_id)
    return task.round_id


def _refused(call) -> str:
    try:
        call()
    except Exception as error:  # noqa: BLE001 - the code of a GameError
        return getattr(error, "code", repr(error))
    raise AssertionError("not refused")


def test_many_closers_at_once_one_winner(db):
    game = _game(db)
    labeler, a, b = _members(game, 1, 2, 3)
    _submitted_round(game, labeler)
    posted = game.group_rounds.post(-5, "main", a, None, "en")
    assert posted.new and game.group_rounds.post(-5, "main", b, None, "en").new is False  # one open per group
    view = posted.round
    target = view.candidates.index(next(c for c in view.candidates if c.id == _target(db, view.round_id))) + 1
    game.group_rounds.pick(-5, view.round_id, a, target)
    game.group_rounds.pick(-5, view.round_id, b, target)
    assert _refused(lambda: game.group_rounds.pick(-5, view.round_id, a, 1)) == ErrorCode.ALREADY_PICKED
    assert _refused(lambda: game.group_rounds.pick(-6, view.round_id, b, 1)) == ErrorCode.STALE  # another group
    assert _refused(lambda: game.group_rounds.pick(-5, view.round_id, labeler, 1)) == ErrorCode.OWN_STICKER
    results, barrier = [], threading.Barrier(6)

    def close() -> None:
        barrier.wait()
        results.append(game.group_rounds.close(view.round_id))

    threads = [threading.Thread(target=close) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 5 + [True]
    with Session(db) as session:
        assert sorted(e.points for e in session.exec(select(ScoreEvent).where(
            ScoreEvent.reason == "retriever_hit"))) == [2, 3]
        assert len(session.exec(select(RetrievalTask).where(RetrievalTask.setting == "group")).all()) == 2
        assert len(session.exec(select(OutboxMessage).where(OutboxMessage.kind == "group_round_closed")).all()) == 1
    table = game.group_rounds.table(-5, "en")
    assert [(row.player_id, row.points) for row in table.all_time] == [(a, 3), (b, 2)]
    assert game.group_rounds.table(-6, "en").all_time == []  # another group's table is its own
    game.close()


def test_a_round_nobody_played_gives_its_slot_back_and_due_rounds_close(db):
    game = _game(db, group_round_seconds=5)
    labeler, a = _members(game, 1, 2)
    round_id = _submitted_round(game, labeler)
    posted = game.group_rounds.post(-5, "main", a, "en", "zh")
    with Session(db) as session:
        assert session.get(LabelRound, round_id).retrieval_count == 1
        assert session.get(GroupChat, -5).language == "en"  # /round en set it
    assert game.group_rounds.close_due() == 0  # not due yet
    game.clock = lambda: utcnow() + timedelta(seconds=6)
    game.group_rounds.clock = game.clock
    assert _refused(lambda: game.group_rounds.pick(-5, posted.round.round_id, a, 1)) == ErrorCode.GROUP_ROUND_OVER
    assert game.group_rounds.close_due() == 1 and game.group_rounds.close_due() == 0
    with Session(db) as session:
        assert session.get(LabelRound, round_id).retrieval_count == 0
    game.close()


def test_a_migrated_group_keeps_its_round(db):
    game = _game(db)
    labeler, a = _members(game, 1, 2)
    _submitted_round(game, labeler)
    posted = game.group_rounds.post(-5, "main", a, None, "en")
    game.group_rounds.migrated(-5, -1_000_000_000_005, "main")
    game.group_rounds.pick(-1_000_000_000_005, posted.round.round_id, a, 1)
    with Session(db) as session:
        assert session.get(GroupRound, posted.round.round_id).chat_id == -1_000_000_000_005
    assert game.group_rounds.post(-1_000_000_000_005, "main", a, None, "en").new is False
    game.close()


def _target(db, round_id: int) -> int:
    with Session(db) as session:
        return session.get(GroupRound, round_id).sticker_id
