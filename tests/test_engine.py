"""Every game rule of docs/design.md ("The game"), through the engine, on SQLite and PostgreSQL."""

from datetime import timedelta

import pytest
from sqlmodel import Session, func, select

from core.datasets import dataset_rows
from core.game import Game, GameError
from storage.db import session_scope
from storage.models import (
    ChatContext,
    LabelRound,
    OutboxMessage,
    PlaySession,
    Query,
    QueryStatus,
    RetrievalTask,
    Review,
    ScoreEvent,
    Sticker,
    TaskQuery,
    utcnow,
)
from tests.helpers import labeled_round, make_player, make_world


def _ledger(db):
    with Session(db) as session:
        return list(session.exec(select(ScoreEvent).order_by(ScoreEvent.id)))


def _retrieve(game, player_id):
    task = game.assignment.next_task(player_id, prefer="retriever")
    assert task is not None and task.role == "retriever"
    return task


def _target(db, task_id):
    with Session(db) as session:
        return session.get(RetrievalTask, task_id).sticker_id


def test_players_need_consent_and_a_language(db, settings):
    game = make_world(db, settings)
    player = make_player(game, 1, consent=False)
    with pytest.raises(GameError) as error:
        game.assignment.next_task(player)
    assert error.value.code == "no_consent"
    game.players.give_consent(player)
    assert game.assignment.next_task(player) is not None
    game.players.withdraw_consent(player)
    with pytest.raises(GameError):
        game.assignment.next_task(player)


def test_register_is_idempotent(db, settings):
    game = make_world(db, settings)
    assert game.players.register(5, "x", "en").id == game.players.register(5, "x", "en").id


def test_labeler_round_preview_shows_the_targets_rank(db, settings):
    game = make_world(db, settings)
    player = make_player(game, 1)
    task = game.assignment.next_task(player, prefer="labeler")
    assert task.context and task.sticker.key.endswith(".png")
    sticker_number = int(task.sticker.key.split(".")[0]) - 1000
    preview = game.labeling.add_query(player, task.round_id, f"seed{sticker_number}")
    assert preview.target_rank == 1 and preview.hits[0].id == task.sticker.id
    assert game.labeling.add_query(player, task.round_id, "totally unrelated words").target_rank is None


def test_taboo_refuses_a_query_already_collected_for_the_sticker(db, settings):
    game = make_world(db, settings)
    player = make_player(game, 1)
    task = game.assignment.next_task(player, prefer="labeler")
    number = int(task.sticker.key.split(".")[0]) - 1000
    with pytest.raises(GameError) as error:
        game.labeling.add_query(player, task.round_id, f"SEED{number}  Mood!")  # the seed, after normalisation
    assert error.value.code == "taboo"
    game.labeling.add_query(player, task.round_id, "happy dance")
    with pytest.raises(GameError) as error:
        game.labeling.add_query(player, task.round_id, "Happy Dance")
    assert error.value.code == "repeat_own"


def test_visual_only_descriptions_are_refused(db, settings):
    game = make_world(db, settings)
    player = make_player(game, 1)
    task = game.assignment.next_task(player, prefer="labeler")
    with pytest.raises(GameError) as error:
        game.labeling.add_query(player, task.round_id, "yellow circle")
    assert error.value.code == "visual_only"


@pytest.mark.parametrize("text,code", [
    ("", "empty"), ("x" * 5000, "too_long"), ("😂😂", "only_emoji"), ("bad\x00text", "control_chars"),
])
def test_bad_query_input_changes_nothing(db, settings, text, code):
    game = make_world(db, settings)
    player = make_player(game, 1)
    task = game.assignment.next_task(player, prefer="labeler")
    with pytest.raises(GameError) as error:
        game.labeling.add_query(player, task.round_id, text)
    assert error.value.code == code
    with Session(db) as session:
        assert session.exec(select(func.count()).select_from(Query).where(Query.author_id == player)).one() == 0


def test_remove_query_and_submit_rules(db, settings):
    game = make_world(db, settings)
    player, other = make_player(game, 1), make_player(game, 2)
    task = game.assignment.next_task(player, prefer="labeler")
    with pytest.raises(GameError) as error:
        game.labeling.submit_round(player, task.round_id)
    assert error.value.code == "no_queries"
    preview = game.labeling.add_query(player, task.round_id, "happy dance")
    with pytest.raises(GameError):
        game.labeling.remove_query(other, task.round_id, preview.query.id)
    game.labeling.remove_query(player, task.round_id, preview.query.id)
    game.labeling.add_query(player, task.round_id, "joy")
    assert game.labeling.submit_round(player, task.round_id).query_count == 1
    with pytest.raises(GameError) as error:
        game.labeling.submit_round(player, task.round_id)
    assert error.value.code == "round_closed"


def test_roles_alternate_and_a_player_never_retrieves_their_own_sticker(db, settings):
    game = make_world(db, settings, stickers=12)
    alice, bob = make_player(game, 1), make_player(game, 2)
    alice_round = labeled_round(game, alice)
    # Alice just labeled, so she retrieves next; the only submitted round is her own, so what she
    # gets is a known-answer (gold) task, and never her own sticker.
    alice_task = game.assignment.next_task(alice)
    assert alice_task.role == "retriever"
    with Session(db) as session:
        stored = session.get(RetrievalTask, alice_task.task_id)
        assert stored.is_gold and stored.label_round_id is None
        assert stored.sticker_id != session.get(LabelRound, alice_round).sticker_id
    bob_task = game.assignment.next_task(bob, prefer="retriever")
    assert bob_task.role == "retriever"
    with Session(db) as session:
        assert session.get(RetrievalTask, bob_task.task_id).label_round_id == alice_round


def test_candidates_hold_the_target_same_language_and_are_reproducible(db, settings):
    game = make_world(db, settings, stickers=20, languages=("en", "zh"))
    alice, bob = make_player(game, 1), make_player(game, 2)
    labeled_round(game, alice, queries=("seed3 mood party",))
    task = _retrieve(game, bob)
    assert len(task.candidates) == settings.rules.candidates
    assert len({c.id for c in task.candidates}) == settings.rules.candidates
    with Session(db) as session:
        stored = session.get(RetrievalTask, task.task_id)
        assert stored.sticker_id in stored.candidate_ids
        languages = set(session.exec(select(ChatContext.language).where(
            ChatContext.sticker_id.in_(stored.candidate_ids))))
        assert "en" in languages
        again = game.assignment.candidates(session, "en", stored.sticker_id, stored.query_ids, stored.seed)
    assert again == stored.candidate_ids
    assert task.candidates == game.assignment.current_task(bob).candidates


def test_zh_player_never_sees_english_work(db, settings):
    game = make_world(db, settings, languages=("en", "zh"))
    en_player, zh_player = make_player(game, 1, "en"), make_player(game, 2, "zh")
    labeled_round(game, en_player)
    task = game.assignment.next_task(zh_player, prefer="retriever")
    assert task.language == "zh"
    with Session(db) as session:
        stored = session.get(RetrievalTask, task.task_id)
        assert stored.is_gold and stored.label_round_id is None  # not the English round
        assert all(q.startswith("表情") for q in task.queries)


@pytest.mark.parametrize("rank,points", [(1, 3), (2, 2), (3, 1)])
def test_a_hit_scores_both_sides_by_rank_and_validates_the_queries(db, settings, rank, points):
    game = make_world(db, settings)
    alice, bob = make_player(game, 1), make_player(game, 2)
    labeled_round(game, alice)
    task = _retrieve(game, bob)
    target = _target(db, task.task_id)
    others = [c.id for c in task.candidates if c.id != target]
    picks = others[: rank - 1] + [target]
    outcome = game.retrieval.submit_ranking(bob, task.task_id, picks)
    assert outcome.hit_rank == rank and outcome.points == points
    ledger = {(e.player_id, e.reason): e.points for e in _ledger(db)}
    assert ledger == {(bob, "retriever_hit"): points, (alice, "labeler_hit"): points}
    with Session(db) as session:
        assert {q.status for q in session.exec(select(Query).where(Query.author_id == alice))} == {"validated"}
        feedback = session.exec(select(OutboxMessage).where(OutboxMessage.player_id == alice)).one()
        assert feedback.kind == "feedback_hit" and feedback.payload["rank"] == rank
    # validated queries are searchable at once
    assert game.previews.preview("en", "happy dance", target).target_rank == 1


def test_a_miss_sends_queries_to_review_and_scores_nothing(db, settings):
    game = make_world(db, settings)
    alice, bob = make_player(game, 1), make_player(game, 2)
    labeled_round(game, alice)
    task = _retrieve(game, bob)
    target = _target(db, task.task_id)
    outcome = game.retrieval.submit_ranking(bob, task.task_id, [c.id for c in task.candidates if c.id != target][:3])
    assert outcome.hit_rank is None and outcome.sent_to_review
    assert _ledger(db) == []
    with Session(db) as session:
        assert session.exec(select(Query.status).where(Query.author_id == alice)).one() == "needs_review"
        assert session.exec(select(OutboxMessage.kind).where(OutboxMessage.player_id == alice)).one() == \
            "feedback_miss"


@pytest.mark.parametrize("picks_of,code", [
    (lambda task, target: [], "no_picks"),
    (lambda task, target: [c.id for c in task.candidates][:4], "too_many_picks"),
    (lambda task, target: [target, target], "repeated_pick"),
    (lambda task, target: [999_999], "pick_not_candidate"),
    (lambda task, target: ["1"], "bad_pick"),
])
def test_bad_rankings_are_refused_and_change_nothing(db, settings, picks_of, code):
    game = make_world(db, settings)
    alice, bob = make_player(game, 1), make_player(game, 2)
    labeled_round(game, alice)
    task = _retrieve(game, bob)
    with pytest.raises(GameError) as error:
        game.retrieval.submit_ranking(bob, task.task_id, picks_of(task, _target(db, task.task_id)))
    assert error.value.code == code
    assert _ledger(db) == []
    assert game.assignment.current_task(bob).task_id == task.task_id


def test_a_second_submit_or_a_foreign_task_scores_nothing(db, settings):
    game = make_world(db, settings)
    alice, bob, carol = make_player(game, 1), make_player(game, 2), make_player(game, 3)
    labeled_round(game, alice)
    task = _retrieve(game, bob)
    target = _target(db, task.task_id)
    with pytest.raises(GameError) as error:
        game.retrieval.submit_ranking(carol, task.task_id, [target])
    assert error.value.code == "not_your_task"
    game.retrieval.submit_ranking(bob, task.task_id, [target])
    with pytest.raises(GameError) as error:
        game.retrieval.submit_ranking(bob, task.task_id, [target])
    assert error.value.code == "task_closed"
    assert sum(e.points for e in _ledger(db)) == 6


def test_resonance_bonus_when_two_retrievers_find_the_sticker(db, settings):
    game = make_world(db, settings)
    alice, bob, carol = make_player(game, 1), make_player(game, 2), make_player(game, 3)
    labeled_round(game, alice)
    for retriever in (bob, carol):
        task = _retrieve(game, retriever)
        game.retrieval.submit_ranking(retriever, task.task_id, [_target(db, task.task_id)])
    reasons = [e.reason for e in _ledger(db) if e.player_id == alice]
    assert reasons.count("resonance") == 1 and reasons.count("labeler_hit") == 2


def test_resonance_counts_distinct_retrievers_not_hits(db, settings):
    settings.rules.retrievals_per_round = 3
    game = make_world(db, settings)
    alice, bob, carol = make_player(game, 1), make_player(game, 2), make_player(game, 3)
    round_id = labeled_round(game, alice)
    task = _retrieve(game, bob)
    game.retrieval.submit_ranking(bob, task.task_id, [_target(db, task.task_id)])
    with session_scope(db) as session:  # bob is shown the same query again (the game never does this itself)
        first = session.get(RetrievalTask, task.task_id)
        again = RetrievalTask(retriever_id=bob, label_round_id=round_id, sticker_id=first.sticker_id,
                              language="en", query_ids=first.query_ids, candidate_ids=first.candidate_ids)
        session.add(again)
        session.flush()
        session.add_all([TaskQuery(task_id=again.id, query_id=q) for q in first.query_ids])
        again_id = again.id
    game.retrieval.submit_ranking(bob, again_id, [_target(db, again_id)])

    def hits_and_bonus():
        with Session(db) as session:
            query = session.exec(select(Query).where(Query.label_round_id == round_id)).one()
            return query.hit_count, [e.reason for e in _ledger(db)].count("resonance")

    assert hits_and_bonus() == (1, 0)
    task = _retrieve(game, carol)
    game.retrieval.submit_ranking(carol, task.task_id, [_target(db, task.task_id)])
    assert hits_and_bonus() == (2, 1)


def test_skipping_lowers_a_stickers_priority(db, settings):
    game = make_world(db, settings)
    player = make_player(game, 1)
    task = game.assignment.next_task(player, prefer="labeler")
    game.labeling.skip_round(player, task.round_id)
    with Session(db) as session:
        context = session.exec(select(ChatContext).where(ChatContext.sticker_id == task.sticker.id)).one()
        assert context.skip_count == 1 and context.priority > 0
    other = make_player(game, 2)
    assert game.assignment.next_task(other, prefer="labeler").sticker.id != task.sticker.id


def test_skipped_retrieval_returns_the_round_to_the_pool(db, settings):
    game = make_world(db, settings)
    alice, bob, carol = make_player(game, 1), make_player(game, 2), make_player(game, 3)
    round_id = labeled_round(game, alice)
    task = _retrieve(game, bob)
    game.retrieval.skip_task(bob, task.task_id)
    with Session(db) as session:
        assert session.get(LabelRound, round_id).retrieval_count == 0
    assert game.assignment.next_task(carol, prefer="retriever").role == "retriever"


def test_suggestions_enter_the_pool_as_pending_and_are_validated_later(db, settings):
    game = make_world(db, settings)
    alice, bob, carol = make_player(game, 1), make_player(game, 2), make_player(game, 3)
    labeled_round(game, alice)
    task = _retrieve(game, bob)
    candidate = task.candidates[0].id
    suggestion = game.retrieval.suggest_query(bob, task.task_id, candidate, "brand new idea")
    assert suggestion.status == QueryStatus.PENDING
    with pytest.raises(GameError):
        game.retrieval.suggest_query(carol, task.task_id, candidate, "not my task")
    game.retrieval.submit_ranking(bob, task.task_id, [_target(db, task.task_id)])
    # carol gets either alice's round or bob's suggestion; both are other players' work
    seen = set()
    for _ in range(2):
        next_task = game.assignment.next_task(carol, prefer="retriever")
        if next_task is None or next_task.role != "retriever":
            break
        seen.add(tuple(next_task.queries))
        game.retrieval.submit_ranking(carol, next_task.task_id, [_target(db, next_task.task_id)])
    assert ("brand new idea",) in seen
    with Session(db) as session:
        assert session.get(Query, suggestion.id).status == QueryStatus.VALIDATED


def test_gold_tasks_check_retrievers_and_flag_those_who_fail(db, settings):
    settings.rules.gold_rate = 1.0
    settings.rules.gold_flag_failures = 2
    game = make_world(db, settings, stickers=15)
    player = make_player(game, 1)
    for _ in range(3):
        task = game.assignment.next_task(player, prefer="retriever")
        assert task.role == "retriever"
        target = _target(db, task.task_id)
        game.retrieval.submit_ranking(player, task.task_id, [c.id for c in task.candidates if c.id != target][:1])
    with Session(db) as session:
        assert all(t.is_gold for t in session.exec(select(RetrievalTask)))
        flags = session.exec(select(OutboxMessage).where(OutboxMessage.kind == "moderator_flag")).all()
        assert len(flags) == 1
    stats = game.standings.player_stats(player)
    assert stats.accuracy == 0.0 and stats.answered == 3


def test_sessions_count_tasks_and_break_after_a_pause(db, settings):
    clock = [utcnow()]
    game = make_world(db, settings, stickers=20, clock=lambda: clock[0])
    settings.rules.session_min_tasks = 3
    player = make_player(game, 1)
    for _ in range(3):
        labeled_round(game, player)
        clock[0] += timedelta(minutes=1)
    clock[0] += timedelta(minutes=settings.rules.session_gap_minutes + 1)
    labeled_round(game, player)
    with Session(db) as session:
        sessions = session.exec(select(PlaySession).order_by(PlaySession.id)).all()
    assert [s.task_count for s in sessions] == [3, 1]
    # Only the first qualifies for the participation reward.
    counts = game.prizes.tally(clock[0] - timedelta(days=1), clock[0] + timedelta(minutes=1), "day")
    assert counts["en"]["participation"] == 1


def test_abandoned_tasks_expire_and_free_their_slot(db, settings):
    clock = [utcnow()]
    game = make_world(db, settings, clock=lambda: clock[0])
    alice, bob = make_player(game, 1), make_player(game, 2)
    round_id = labeled_round(game, alice)
    _retrieve(game, bob)
    open_round = game.assignment.next_task(alice, prefer="labeler")
    # alice's feedback on her first round waits for her next screen (held while she was in a task)
    with session_scope(db) as session:
        session.add(OutboxMessage(dedupe_key="held-for-alice", kind="feedback_miss", player_id=alice,
                                  payload={"queries": ["q"]}, status="held"))
    clock[0] += timedelta(minutes=settings.rules.task_expiry_minutes + 1)
    assert game.expiry.expire_abandoned() == {"rounds": 1, "tasks": 1, "notices_released": 1}
    with Session(db) as session:
        assert session.get(LabelRound, round_id).retrieval_count == 0
        assert session.get(LabelRound, open_round.round_id).status == "expired"
        # she walked away: the notice goes out as a message of its own instead of waiting for ever
        assert session.exec(select(OutboxMessage.status).where(
            OutboxMessage.dedupe_key == "held-for-alice")).one() == "pending"
    bob_round = game.assignment.next_task(bob, prefer="labeler")
    with session_scope(db) as session:
        session.add(OutboxMessage(dedupe_key="held-for-bob", kind="feedback_miss", player_id=bob,
                                  payload={"queries": ["q"]}, status="held"))
    assert bob_round is not None and game.expiry.expire_abandoned()["notices_released"] == 0  # bob is in a task


def test_review_accept_correct_discard_are_audited_and_moderator_only(db, settings):
    game = make_world(db, settings, stickers=20)
    alice, bob = make_player(game, 1), make_player(game, 2)
    moderator = make_player(game, 3)
    game.players.set_moderator(moderator)
    labeled_round(game, alice, queries=("first idea", "second idea", "thrid idea"))
    task = _retrieve(game, bob)
    target = _target(db, task.task_id)
    game.retrieval.submit_ranking(bob, task.task_id, [c.id for c in task.candidates if c.id != target][:2])
    with pytest.raises(GameError):
        game.moderation.pending_reviews(alice)
    items = game.moderation.pending_reviews(moderator)
    assert len(items) == 3 and items[0].retriever_picks and items[0].sticker.id == target
    first, second, third = (item.query.id for item in items)
    assert game.moderation.accept_query(moderator, first).status == "accepted"
    assert game.moderation.discard_query(moderator, second).status == "discarded"
    assert game.moderation.correct_query(moderator, third, "third idea").text == "third idea"
    with pytest.raises(GameError) as error:
        game.moderation.accept_query(moderator, first)
    assert error.value.code == "already_reviewed"
    with Session(db) as session:
        actions = [r.action for r in session.exec(select(Review).order_by(Review.id))]
    assert actions == ["accept", "discard", "correct"]
    key = next(k for k, _ in dataset_rows(db, "en") if k == items[0].sticker.key)
    exported = dict(dataset_rows(db, "en"))[key]
    assert "first idea" in exported and "third idea" in exported and "second idea" not in exported


def test_withdrawn_consent_removes_queries_from_the_export(db, settings):
    game = make_world(db, settings)
    alice, bob = make_player(game, 1), make_player(game, 2)
    labeled_round(game, alice, queries=("alice special",))
    task = _retrieve(game, bob)
    game.retrieval.submit_ranking(bob, task.task_id, [_target(db, task.task_id)])
    assert any("alice special" in qs for _, qs in dataset_rows(db, "en"))
    game.players.withdraw_consent(alice)
    assert not any("alice special" in qs for _, qs in dataset_rows(db, "en"))


def test_leaderboard_and_stats_derive_from_the_ledger(db, settings):
    game = make_world(db, settings)
    alice, bob = make_player(game, 1), make_player(game, 2)
    labeled_round(game, alice)
    task = _retrieve(game, bob)
    game.retrieval.submit_ranking(bob, task.task_id, [_target(db, task.task_id)])
    board = game.standings.leaderboard("en")
    assert [(row.player_id, row.points) for row in board] == [(alice, 3), (bob, 3)]
    stats = game.standings.player_stats(bob)
    assert stats.points == 3 and stats.rank == 1 and stats.accuracy == 1.0 and stats.streak == 1


def test_context_review_puts_contexts_into_the_game(db, settings):
    game = make_world(db, settings, stickers=3)
    moderator = make_player(game, 9)
    game.players.set_moderator(moderator)
    with Session(db) as session:
        sticker = Sticker(key="new.png", file_path="stickers/new.png", format="png")
        session.add(sticker)
        session.commit()
        session.add(ChatContext(sticker_id=sticker.id, conversation="x", message_id=1, messages=[],
                                language="en"))
        session.commit()
    pending = game.moderation.pending_contexts(moderator)
    assert len(pending) == 1
    game.moderation.review_context(moderator, pending[0].id, approve=True)
    assert game.moderation.pending_contexts(moderator) == []


def test_engine_rebuilds_its_index_from_the_database(db, settings):
    first = make_world(db, settings)
    second = Game.open(db, settings)
    assert len(second.indexes["en"]) == len(first.indexes["en"]) == 12
