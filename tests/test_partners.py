"""Partner bots in empty seats (core/game/partners.py): a model answers a round no person has taken,
once, through the retrieval service; the labeler hears it; the round stays the people's; models never
rank; humans and models compared (core/partner_figures.py). The conversation through the sandbox is
in tests/test_partner_bots.py."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from core.dashboard import dashboard
from core.game import Game
from core.game.errors import GameError
from core.partner_figures import compare, partner_figures
from core.text import taboo_key
from storage.db import session_scope
from storage.models import (
    LabelRound,
    OutboxMessage,
    Player,
    PlayerKind,
    PlaySession,
    Prize,
    Query,
    QuerySource,
    QueryStatus,
    RetrievalTask,
    ScoreEvent,
    TaskStatus,
)
from tests.conftest import ROOT
from tests.helpers import make_player, make_world


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def partner_settings(settings):
    return settings.replace(rules={"partner_after": 60, "partner_points": 1})


def world(db, settings, languages=("en",)):
    clock = Clock()
    return make_world(db, settings, languages=languages, clock=clock), clock


def seed_word(game, sticker_id: int, language: str = "en") -> str:
    """A word of the sticker's seed query: BM25 finds the sticker from it."""
    with Session(game.db.engine) as session:
        text = session.exec(select(Query.text).where(Query.sticker_id == sticker_id, Query.language == language,
                                                     Query.source == QuerySource.SEED)).first()
    return text.split()[0]


def submit(game, player_id: int, queries_for) -> LabelRound:
    """A labeler's round with queries chosen from its sticker (`queries_for(sticker_id)`)."""
    task = game.assignment.next_task(player_id, prefer="labeler")
    assert task.role == "labeler"
    for text in queries_for(task.sticker.id):
        game.labeling.add_query(player_id, task.round_id, text)
    game.labeling.submit_round(player_id, task.round_id)
    with Session(game.db.engine) as session:
        return session.get(LabelRound, task.round_id)


def tasks_of(game, round_id: int) -> list[tuple[RetrievalTask, Player]]:
    with Session(game.db.engine) as session:
        return list(session.exec(select(RetrievalTask, Player).join(Player, Player.id == RetrievalTask.retriever_id)
                                 .where(RetrievalTask.label_round_id == round_id).order_by(RetrievalTask.id)).all())


def test_a_round_waiting_past_partner_after_gets_one_model_answer_and_stays_the_peoples(db, partner_settings):
    game, clock = world(db, partner_settings)
    alice = make_player(game, 1)
    label_round = submit(game, alice, lambda sticker: [f"{seed_word(game, sticker)} feeling"])
    clock.wait(59)
    assert game.partners.answer_waiting() == 0  # not waited long enough
    clock.wait(2)
    assert game.partners.answer_waiting() == 1
    assert game.partners.answer_waiting() == 0  # answered once
    [(task, partner)] = tasks_of(game, label_round.id)
    assert partner.kind == PlayerKind.MODEL and partner.display_name == "bm25" and partner.telegram_user_id is None
    assert task.status == TaskStatus.ANSWERED and task.hit_rank == 1 and len(task.candidate_ids) == 9
    assert task.picks[0] == label_round.sticker_id and len(task.picks) == 3
    with Session(db) as session:
        stored = session.get(LabelRound, label_round.id)
        # the people's pool is untouched: no retrieval slot used, queries still waiting for a person
        assert stored.retrieval_count == 0 and stored.partner_at is not None
        assert {q.status for q in session.exec(select(Query).where(Query.label_round_id == label_round.id))} \
            == {QueryStatus.PENDING}
        ledger = session.exec(select(ScoreEvent)).all()
        assert [(e.player_id, e.points, e.reason) for e in ledger] == [(alice, 1, "partner_hit")]
        [notice] = session.exec(select(OutboxMessage).where(OutboxMessage.kind == "partner_feedback")).all()
        assert notice.player_id == alice and notice.payload["rank"] == 1 and notice.payload["points"] == 1
        assert notice.payload["partner"] == "BM25" and notice.payload["queries"] == [
            f"{seed_word(game, label_round.sticker_id)} feeling"]

    # A person who comes later still gets the round, and scores it as always.
    bob = make_player(game, 2)
    bob_round = submit(game, bob, lambda sticker: ["bob's words"])  # new players label first
    grid = game.assignment.next_task(bob)
    assert grid.role == "retriever" and grid.task_id != task.id
    with Session(db) as session:
        assert session.get(RetrievalTask, grid.task_id).label_round_id == label_round.id
    outcome = game.retrieval.submit_ranking(bob, grid.task_id, [label_round.sticker_id])
    assert outcome.hit_rank == 1 and outcome.points == 3
    with Session(db) as session:
        assert session.get(LabelRound, label_round.id).retrieval_count == 1
        points = {(e.player_id, e.reason): e.points for e in session.exec(select(ScoreEvent))}
        assert points == {(alice, "partner_hit"): 1, (alice, "labeler_hit"): 3, (bob, "retriever_hit"): 3}
        assert {q.status for q in session.exec(select(Query).where(Query.label_round_id == label_round.id))} \
            == {QueryStatus.VALIDATED}
    assert bob_round.id != label_round.id


def test_a_miss_scores_nothing_validates_nothing_and_reviews_nothing(db, partner_settings):
    game, clock = world(db, partner_settings)
    alice = make_player(game, 1)
    label_round = submit(game, alice, lambda sticker: ["utterly unrelated words"])
    clock.wait(61)
    assert game.partners.answer_waiting() == 1
    [(task, _partner)] = tasks_of(game, label_round.id)
    with Session(db) as session:
        # BM25 has nothing to go by: its three picks are the grid's order (a guess, as a person's)
        ledger = [(e.player_id, e.points, e.reason) for e in session.exec(select(ScoreEvent))]
        assert ledger == ([(alice, 1, "partner_hit")] if task.hit_rank else [])
        [notice] = session.exec(select(OutboxMessage).where(OutboxMessage.kind == "partner_feedback")).all()
        assert notice.payload["rank"] == task.hit_rank and notice.payload["points"] == (1 if task.hit_rank else 0)
        assert {q.status for q in session.exec(select(Query).where(Query.label_round_id == label_round.id))} \
            == {QueryStatus.PENDING}
        assert session.get(LabelRound, label_round.id).retrieval_count == 0


def test_no_partner_for_a_round_a_person_has_taken_or_when_partners_are_off(db, partner_settings):
    game, clock = world(db, partner_settings)
    alice, bob = make_player(game, 1), make_player(game, 2)
    label_round = submit(game, alice, lambda sticker: ["first idea"])
    submit(game, bob, lambda sticker: ["bob idea"])
    grid = game.assignment.next_task(bob)  # bob holds alice's round
    assert grid.role == "retriever"
    clock.wait(3600)
    assert game.partners.answer_round(label_round.id) is None
    assert all(partner.kind == PlayerKind.HUMAN for _task, partner in tasks_of(game, label_round.id))
    game.settings = game.partners.settings = partner_settings.replace(rules={"partner_after": 0})
    assert game.partners.answer_waiting() == 0  # off: bob's own round waits for a person only


def test_models_never_reach_leaderboards_prizes_or_the_dashboard(db, partner_settings):
    from core.dashboard import leaderboards

    game, clock = world(db, partner_settings)
    alice = make_player(game, 1)
    submit(game, alice, lambda sticker: [f"{seed_word(game, sticker)} feeling"])
    clock.wait(61)
    assert game.partners.answer_waiting() == 1
    with session_scope(db) as session:
        partner = session.exec(select(Player).where(Player.kind == PlayerKind.MODEL)).one()
        # Points and a long session written for the model (as a bug or a future policy might):
        # the lists must still leave it out, because it is a model.
        session.add(ScoreEvent(idempotency_key="forged", player_id=partner.id, language="en", points=99,
                               reason="retriever_hit", created_at=clock()))
        session.add(PlaySession(player_id=partner.id, language="en", started_at=clock(), last_activity_at=clock(),
                                task_count=50))
    board = game.standings.leaderboard("en", since=clock() - timedelta(days=7))
    assert [row.points for row in board] == [1]  # alice's partner point only
    dashboard_board = leaderboards(db, partner_settings, period=timedelta(days=3650))
    assert [row["points"] for row in dashboard_board["en"]] == [1]
    game.prizes.tally(clock() - timedelta(days=1), clock() + timedelta(days=1), "day")
    with Session(db) as session:
        assert {p.player_id for p in session.exec(select(Prize))} == {alice}
    assert game.standings.player_stats(alice).rank == 1


def test_two_partners_at_once_answer_a_round_once(db, partner_settings):
    import threading

    game, clock = world(db, partner_settings)
    alice = make_player(game, 1)
    label_round = submit(game, alice, lambda sticker: ["one idea"])
    clock.wait(61)
    barrier, results = threading.Barrier(4), []

    def answer():
        barrier.wait()
        results.append(game.partners.answer_round(label_round.id))

    threads = [threading.Thread(target=answer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(result is not None for result in results) == 1
    assert len(tasks_of(game, label_round.id)) == 1


def test_two_processes_on_postgresql_give_each_waiting_round_exactly_one_partner_answer(postgres_url, tmp_path,
                                                                                        partner_settings):
    from sqlalchemy import text
    from sqlmodel import SQLModel

    from storage.db import make_engine

    db = make_engine(postgres_url)
    with db.begin() as connection:
        tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    game = make_world(db, partner_settings, stickers=30)
    rounds = []
    for user in range(1, 13):
        player = make_player(game, user)
        rounds.append(submit(game, player, lambda sticker, user=user: [f"idea {user}"]).id)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    go = tmp_path / "go"
    processes = [subprocess.Popen([sys.executable, "-m", "tests.partner_race", postgres_url, str(r), str(go)],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for r in ready]
    try:
        import time
        deadline = time.monotonic() + 120
        while not all(r.exists() for r in ready):
            assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
            assert time.monotonic() < deadline, "the racing processes did not start"
            time.sleep(0.05)
        time.sleep(1.1)  # the rounds have now waited partner_after (1 s)
        go.touch()
        outputs = [p.communicate(timeout=180) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in processes), outputs
    answered = [int(out.strip()) for out, _err in outputs]
    assert sum(answered) == len(rounds)
    with Session(db) as session:
        for round_id in rounds:
            model_tasks = session.exec(select(RetrievalTask).join(Player, Player.id == RetrievalTask.retriever_id)
                                       .where(RetrievalTask.label_round_id == round_id,
                                              Player.kind == PlayerKind.MODEL)).all()
            assert len(model_tasks) == 1 and model_tasks[0].status == TaskStatus.ANSWERED
            assert session.get(LabelRound, round_id).retrieval_count == 0
    db.dispose()


@pytest.mark.parametrize("taken, again", [
    ("so hot", "So hot!!"), ("so hot", "so, hot 🔥"), ("so hot", "sooooo hot"), ("so hot", "  so   hot ."),
    ("好热", "好 热！！"), ("好热啊", "好热啊～～"), ("累死了", "累死了😩"),
])
def test_near_duplicates_collide_under_the_taboo(db, partner_settings, taken, again):
    assert taboo_key(taken) == taboo_key(again)
    language = "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in taken) else "en"
    game, _clock = world(db, partner_settings, languages=(language,))
    alice, bob = make_player(game, 1, language), make_player(game, 2, language)
    first = game.assignment.next_task(alice, prefer="labeler")
    game.labeling.add_query(alice, first.round_id, taken)
    with pytest.raises(GameError, match="repeat_own"):
        game.labeling.add_query(alice, first.round_id, again)
    game.labeling.submit_round(alice, first.round_id)
    # bob on the same sticker: the near-duplicate is taboo, so it can never score
    with session_scope(db) as session:
        session.add(LabelRound(player_id=bob, sticker_id=first.sticker.id, context_id=None, language=language,
                               created_at=_clock()))
    with Session(db) as session:
        bob_round = session.exec(select(LabelRound).where(LabelRound.player_id == bob)).one()
    with pytest.raises(GameError, match="taboo"):
        game.labeling.add_query(bob, bob_round.id, again)


def test_different_queries_stay_different_under_the_taboo():
    assert taboo_key("so hot") != taboo_key("so hot today")
    assert taboo_key("too hot") != taboo_key("to hot") and taboo_key("good") != taboo_key("god")
    assert taboo_key("hahaha") != taboo_key("haha") and taboo_key("哈哈哈") == taboo_key("哈")
    assert taboo_key("好热") != taboo_key("好冷")
    assert taboo_key("!!!") == "!!!"  # nothing but symbols keeps its normal form


def test_humans_and_models_compared_on_the_same_rounds(db, partner_settings):
    assert compare([(1, 1), (2, None), (None, 3), (None, None)]) == {
        "rounds": 4, "human_recall_at_1": 0.25, "human_recall_at_3": 0.5, "model_recall_at_1": 0.25,
        "model_recall_at_3": 0.5, "human_found_model_missed": 1, "model_found_human_missed": 1, "both_found": 1,
        "neither_found": 1, "human_found_model_missed_share": 0.25, "model_found_human_missed_share": 0.25}
    game, clock = world(db, partner_settings)
    alice, bob = make_player(game, 1), make_player(game, 2)
    label_round = submit(game, alice, lambda sticker: [f"{seed_word(game, sticker)} feeling"])
    clock.wait(61)
    game.partners.answer_waiting()
    assert partner_figures(db)["en"]["bm25"]["rounds"] == 0  # no person answered it yet
    submit(game, bob, lambda sticker: ["bob idea"])
    grid = game.assignment.next_task(bob)
    with Session(db) as session:
        wrong = next(c for c in session.get(RetrievalTask, grid.task_id).candidate_ids if c != label_round.sticker_id)
    game.retrieval.submit_ranking(bob, grid.task_id, [wrong])
    figures = partner_figures(db)
    assert figures["zh"] == {} and figures["en"]["bm25"]["rounds"] == 1
    assert dashboard(db, partner_settings)["partners"] == figures  # what the dashboard shows
    assert figures["en"]["bm25"]["model_found_human_missed"] == 1
    assert figures["en"]["bm25"]["human_recall_at_3"] == 0.0 and figures["en"]["bm25"]["model_recall_at_1"] == 1.0
    # `sticktionary evaluate` reads the same comparison from an export's judgments.
    from core.evaluation import evaluate_export
    from core.exports import run_export

    export = run_export(db, partner_settings)
    assert evaluate_export(export.folder)["languages"]["en"]["humans_vs_partners"] == figures["en"]["bm25"]


def test_a_dense_partner_ranks_by_meaning_and_bm25_stands_in_without_a_model(db, partner_settings, tmp_path):
    from tests.test_semantic import _small_model

    model = _small_model()
    game, clock = world(db, partner_settings.replace(rules={"partner_model": "dense"},
                                                      exports={"semantic_model_en": model}))
    alice = make_player(game, 1)
    # The sticker's collected queries say "exhausted after work"; alice's words share none of them.
    label_round = submit(game, alice, lambda sticker: ["so tired, need sleep"])
    with session_scope(db) as session:
        session.add(Query(sticker_id=label_round.sticker_id, language="en", text="exhausted after a long day",
                          normalized_text="exhausted after a long day", source=QuerySource.SEED,
                          status=QueryStatus.VALIDATED))
    clock.wait(61)
    assert game.partners.answer_waiting() == 1
    [(task, partner)] = tasks_of(game, label_round.id)
    assert partner.kind == PlayerKind.MODEL and partner.display_name == "dense"
    assert task.picks[0] == label_round.sticker_id  # the only candidate described by meaning close to alice's

    missing = partner_settings.replace(rules={"partner_model": "dense"},
                                        exports={"semantic_model_en": str(tmp_path / "no-model")})
    game = Game.open(db, missing, clock=clock)
    bob = make_player(game, 2)
    other = submit(game, bob, lambda sticker: ["another round"])
    clock.wait(61)
    assert game.partners.answer_waiting() == 1
    [(_task, stand_in)] = tasks_of(game, other.id)
    assert stand_in.display_name == "bm25"


def test_partners_are_no_people_in_the_review_the_exports_participation_or_the_activity_gauge(db, partner_settings):
    from core import metrics
    from core.exports import participation
    from core.game.moderation import missed_task

    game, clock = world(db, partner_settings)
    alice, bob = make_player(game, 1), make_player(game, 2)
    label_round = submit(game, alice, lambda sticker: ["utterly unrelated words"])
    clock.wait(61)
    assert game.partners.answer_waiting() == 1
    submit(game, bob, lambda sticker: ["bob idea"])
    grid = game.assignment.next_task(bob)
    with Session(db) as session:
        wrong = next(c for c in session.get(RetrievalTask, grid.task_id).candidate_ids if c != label_round.sticker_id)
    game.retrieval.submit_ranking(bob, grid.task_id, [wrong])  # a person's miss: the round goes to review
    with session_scope(db) as session:  # a partner's miss on the round, stored after bob's (a higher id)
        [(model_task, partner)] = [(t, p) for t, p in tasks_of(game, label_round.id) if p.kind == PlayerKind.MODEL]
        session.add(RetrievalTask(retriever_id=partner.id, label_round_id=label_round.id,
                                  sticker_id=label_round.sticker_id, language="en", query_ids=model_task.query_ids,
                                  candidate_ids=model_task.candidate_ids, picks=[wrong], status=TaskStatus.ANSWERED,
                                  hit_rank=None, created_at=clock(), answered_at=clock()))
    with Session(db) as session:
        assert missed_task(session, label_round.id).retriever_id == bob
    figures = participation(db, "en")
    assert figures["retrievers"] == 1 and figures["players"] == 2  # alice and bob; no model
    with session_scope(db) as session:  # everyone, the partner included, acted just now
        for player in session.exec(select(Player)):
            player.last_active_at = datetime.now(UTC)
            session.add(player)
    gauge = {sample.labels.get("language"): sample.value for family in metrics.DatabaseState(db, []).families()
             if family.name == "sticktionary_players_active" for sample in family.samples}
    assert gauge["en"] == 2  # alice and bob, not the partner


def test_the_partners_job_answers_the_waiting_rounds_once(db, partner_settings):
    from jobs.schedule import run_job
    from jobs.tasks import JobContext

    game, clock = world(db, partner_settings)  # rounds submitted on 1 December: long waiting by now
    for user in (1, 2):
        submit(game, make_player(game, user), lambda sticker, user=user: [f"idea {user}"])
    context = JobContext(db, partner_settings)
    slot = datetime.now(UTC).replace(second=0, microsecond=0)
    assert run_job(context, "partners", slot).result == {"answered": 2}
    assert run_job(context, "partners", slot + timedelta(minutes=1)).result == {"answered": 0}


def test_a_round_whose_queries_were_all_discarded_gets_no_partner(db, partner_settings):
    game, clock = world(db, partner_settings)
    alice = make_player(game, 1)
    label_round = submit(game, alice, lambda sticker: ["some idea"])
    with session_scope(db) as session:
        for query in session.exec(select(Query).where(Query.label_round_id == label_round.id)):
            query.status = QueryStatus.DISCARDED
            session.add(query)
    clock.wait(61)
    assert game.partners.answer_waiting() == 0 and tasks_of(game, label_round.id) == []
    assert game.partners.waiting_rounds() == []  # looked at once, not again every poll


def test_a_partner_task_left_open_by_a_killed_process_is_submitted_once_later(db, partner_settings):
    game, clock = world(db, partner_settings)
    alice = make_player(game, 1)
    label_round = submit(game, alice, lambda sticker: [f"{seed_word(game, sticker)} feeling"])
    clock.wait(61)
    task_id, _partner = game.partners._draft(label_round.id)  # the process dies right after this step
    assert game.partners.waiting_rounds() == [] and game.partners.left_open() == []  # too fresh to take over
    clock.wait(61)
    assert game.partners.answer_waiting() == 1 and game.partners.answer_waiting() == 0
    [(task, _)] = tasks_of(game, label_round.id)
    assert task.id == task_id and task.status == TaskStatus.ANSWERED and task.hit_rank == 1
    with Session(db) as session:
        assert len(session.exec(select(OutboxMessage).where(OutboxMessage.kind == "partner_feedback")).all()) == 1
