"""Moderation at speed, through the conversation layer on both shells: one screen per round with
per-query decisions edited in place, skipped rounds to the back, language filter and paging, the
correction shown at once, the labeler told, and forged review buttons refused."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from bots.messages.catalogue import catalogue
from core.views import LabelTaskView, RetrievalTaskView
from storage.models import Query, QueryStatus, RetrievalTask
from tests.bots_world import MODERATOR, running_bot, texts

FRAMEWORKS = ["ptb", "aiogram"]
LANGUAGES = ["en", "zh"]
QUERIES = {"en": ["so sick of this", "what a long day", "leave me alone"], "zh": ["烦死了", "今天好累", "别理我"]}


def buttons(entry, prefix=""):
    return [b["callback_data"] for row in (entry.get("reply_markup") or {}).get("inline_keyboard", []) for b in row
            if b["callback_data"].startswith(prefix)]


def ready(game, telegram_id, language):
    player = game.players.register(telegram_id, f"Secret Name {telegram_id}")
    game.players.set_language(player.id, language)
    game.players.give_consent(player.id)
    return player.id


def make_miss(game, labeler_tid, retriever_tid, language, queries):
    """A labeler round whose retrieval missed (its queries then wait for a moderator), played through
    the engine. Returns (labeler's player id, round id)."""
    labeler = ready(game, labeler_tid, language)
    task = game.assignment.next_task(labeler)
    assert isinstance(task, LabelTaskView)
    for text in queries:
        game.labeling.add_query(labeler, task.round_id, text)
    game.labeling.submit_round(labeler, task.round_id)
    retriever = ready(game, retriever_tid, language)
    for _ in range(6):
        current = game.assignment.next_task(retriever)
        if isinstance(current, LabelTaskView):
            game.labeling.skip_round(retriever, current.round_id)  # leaves no round of their own to retrieve
            continue
        assert isinstance(current, RetrievalTaskView)
        with Session(game.db.engine) as session:
            target = session.get(RetrievalTask, current.task_id)
            wrong = next(c.id for c in current.candidates if c.id != target.sticker_id)
        assert game.retrieval.submit_ranking(retriever, current.task_id, [wrong]).hit_rank is None
        return labeler, target.label_round_id
    raise AssertionError("the retriever never got a retrieval task")


def statuses(game, round_id):
    with Session(game.db.engine) as session:
        return [q.status for q in session.exec(select(Query).where(Query.label_round_id == round_id)
                                               .order_by(Query.id))]


@pytest.mark.asyncio
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_one_screen_per_round_and_decisions_edit_it_in_place(game_db, tmp_path, framework, language):
    t = catalogue(language)
    async with running_bot(game_db, tmp_path, framework) as world:
        alice = world.player(1, language)
        await alice.send("/help")  # the chat exists, so notices reach it
        alice_id, round_id = make_miss(world.game, 1, 2, language, QUERIES[language])
        moderator = world.player(MODERATOR, language)
        screen = await moderator.send("/review")
        assert len(screen) == 1 and "photo" in screen[0]  # the round is one message: the grid and its caption
        caption = texts(screen)[0]
        assert all(query in caption for query in QUERIES[language]) and "│" in caption  # queries and chat context
        assert t("review_legend_one") in caption or t("review_legend", last=2)[:6] in caption \
            or t("review_legend_none") in caption
        assert len(buttons(screen[0], "ra:")) == len(buttons(screen[0], "rc:")) == len(buttons(screen[0], "rd:")) == 3
        message_id = screen[0]["message_id"]
        before = len([e for e in await moderator.transcript() if e["by"] == "bot" and not e.get("edit")])

        accept_first, discard_second = buttons(screen[0], "ra:")[0], buttons(screen[0], "rd:")[1]
        edited = await moderator.press(accept_first, message_id=message_id)
        assert [e.get("edit") for e in edited] == [True] and edited[0]["message_id"] == message_id
        assert accept_first not in buttons(edited[0]) and len(buttons(edited[0], "ra:")) == 2
        assert (await moderator.answer_to_last_press())["answer"] == t("review_done_accepted")
        edited = await moderator.press(discard_second, message_id=message_id)
        assert [e.get("edit") for e in edited] == [True] and len(buttons(edited[0], "rd:")) == 1
        last = buttons(edited[0], "ra:")[0]
        done = await moderator.press(last, message_id=message_id)
        # the finished round keeps its decisions and loses its buttons; the queue is empty now
        assert done[0].get("edit") and not buttons(done[0]) and t("review_round_done") in texts(done)[0]
        assert texts(done)[1:] == [t("review_empty")]
        after = len([e for e in await moderator.transcript() if e["by"] == "bot" and not e.get("edit")])
        assert after - before == 1  # three decisions cost one new message (the "nothing left" note)
        assert statuses(world.game, round_id) == ["accepted", "discarded", "accepted"]

        # the labeler hears every decision on the round in one notice
        assert await world.shell.runtime.deliver_outbox_once() >= 1
        notices = [text for text in texts(await alice.replies(settle=0.2)) if t("review_decided", count=3) in text]
        assert len(notices) == 1
        first, second, third = QUERIES[language]
        assert t("review_decided_accepted", query=first) in notices[0]
        assert t("review_decided_discarded", query=second) in notices[0]
        assert t("review_decided_accepted", query=third) in notices[0]
        assert alice_id


@pytest.mark.asyncio
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_a_skipped_round_goes_to_the_back_and_pages_turn(game_db, tmp_path, framework):
    t = catalogue("en")
    async with running_bot(game_db, tmp_path, framework) as world:
        _, first = make_miss(world.game, 1, 2, "en", ["so sick of this"])
        _, second = make_miss(world.game, 3, 4, "en", ["what a long day"])
        moderator = world.player(MODERATOR, "en")
        screen = (await moderator.send("/review"))[0]
        assert "so sick of this" in screen["caption"] and t("review_round", position=1, waiting=2, language="en",
                                                            author="x").split("·")[0] in screen["caption"]
        assert buttons(screen, "rp:") == ["rp:2:all"]  # no previous page on the first
        skip = buttons(screen, "rs:")
        assert skip == [f"rs:{first}:all"]
        replies = await moderator.press(skip[0], message_id=screen["message_id"])
        assert (await moderator.answer_to_last_press())["answer"] == t("review_skipped")
        assert replies[0].get("edit") and not buttons(replies[0])  # the skipped screen keeps no live buttons
        assert "what a long day" in replies[1]["caption"]  # the other round comes first now
        # the skip is kept in the database: a fresh /review shows the same order
        again = (await moderator.send("/review"))[0]
        assert "what a long day" in again["caption"] and buttons(again, "rp:") == ["rp:2:all"]
        page = (await moderator.press("rp:2:all", message_id=again["message_id"]))[0]
        assert "so sick of this" in page["caption"] and buttons(page, "rp:") == ["rp:1:all"]
        back = (await moderator.press("rp:1:all", message_id=page["message_id"]))[0]
        assert "what a long day" in back["caption"]
        # a page past the end shows the last round
        assert "so sick of this" in (await moderator.press("rp:9:all", message_id=back["message_id"]))[0]["caption"]
        assert second


@pytest.mark.asyncio
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_the_queue_is_filtered_by_language(game_db, tmp_path, framework):
    t = catalogue("en")
    async with running_bot(game_db, tmp_path, framework) as world:
        make_miss(world.game, 1, 2, "en", ["so sick of this"])
        make_miss(world.game, 3, 4, "zh", ["烦死了"])
        moderator = world.player(MODERATOR, "en")
        everything = (await moderator.send("/review"))[0]
        assert t("review_round", position=1, waiting=2, language="en", author="x").split("·")[0] \
            in everything["caption"]
        english = (await moderator.send("/review en"))[0]
        assert "so sick of this" in english["caption"] and "烦死了" not in english["caption"]
        assert not buttons(english, "rp:") and all(b.endswith(":en") for b in buttons(english))
        chinese = (await moderator.send("/review zh"))[0]
        assert "烦死了" in chinese["caption"] and all(b.endswith(":zh") for b in buttons(chinese))
        # deciding in a filtered queue keeps the filter: after the last Chinese query, nothing is left in it
        done = await moderator.press(buttons(chinese, "ra:")[0], message_id=chinese["message_id"])
        assert texts(done)[-1] == t("review_empty")
        assert texts(await moderator.send("/review fr")) == [t("review_usage")]


@pytest.mark.asyncio
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_correction_shows_at_once(game_db, tmp_path, framework, language):
    t = catalogue(language)
    first, second, _ = QUERIES[language]
    fixed = "so tired of this" if language == "en" else "烦死我了"
    async with running_bot(game_db, tmp_path, framework) as world:
        alice = world.player(1, language)
        await alice.send("/help")
        alice_id, round_id = make_miss(world.game, 1, 2, language, QUERIES[language][:2])
        moderator = world.player(MODERATOR, language)
        screen = (await moderator.send("/review"))[0]
        prompt = await moderator.press(buttons(screen, "rc:")[0], message_id=screen["message_id"])
        assert prompt[0].get("edit") and t("review_correct_prompt", query=first) in prompt[0]["caption"]
        # a text that cannot be a query is refused, and the prompt still stands
        assert texts(await moderator.send("😀😀")) == [t.error("only_emoji")]
        refreshed = await moderator.send(fixed)
        assert len(refreshed) == 1  # the round's screen again, with the correction in it
        caption = refreshed[0]["caption"]
        assert t("review_line_corrected", n=1, mark="✏️", query=fixed, original=first) in caption
        assert t("review_done_corrected_text", query=fixed) in caption
        assert len(buttons(refreshed[0], "ra:")) == 1  # only the second query is still open
        await moderator.press(buttons(refreshed[0], "ra:")[0], message_id=refreshed[0]["message_id"])
        assert statuses(world.game, round_id) == ["corrected", "accepted"]
        await world.shell.runtime.deliver_outbox_once()
        notice = "\n".join(texts(await alice.replies(settle=0.2)))
        assert t("review_decided_corrected", query=first, corrected=fixed) in notice
        assert t("review_decided_accepted", query=second) in notice
        assert alice_id


@pytest.mark.asyncio
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_forged_review_buttons_are_refused(game_db, tmp_path, framework):
    t = catalogue("en")
    async with running_bot(game_db, tmp_path, framework) as world:
        _, round_id = make_miss(world.game, 1, 2, "en", ["so sick of this"])
        with Session(world.game.db.engine) as session:
            query_id = session.exec(select(Query.id).where(Query.label_round_id == round_id)).one()
        mallory = world.player(7, "en")
        await mallory.send("/help")
        own = (await mallory.transcript())[-1]["message_id"]
        for data in (f"ra:{query_id}:all", f"rd:{query_id}:en", f"rc:{query_id}:all", f"rs:{round_id}:all",
                     "rp:1:all"):
            await mallory.press(data, message_id=own)
            assert (await mallory.answer_to_last_press())["answer"] == t("moderator_only"), data
        assert texts(await mallory.send("/review")) == [t("moderator_only")]
        assert statuses(world.game, round_id) == [QueryStatus.NEEDS_REVIEW]
        # out-of-range or unknown data is stale, not a decision
        for data in (f"ra:{query_id}:fr", f"ra:0{query_id}:all", "rp:0:all"):
            await mallory.press(data, message_id=own)
            assert (await mallory.answer_to_last_press())["answer"] == t("stale")
        # a moderator's second press on a decided query is answered, not applied twice
        moderator = world.player(MODERATOR, "en")
        screen = (await moderator.send("/review"))[0]
        await moderator.press(f"rd:{query_id}:all", message_id=screen["message_id"])
        await moderator.press(f"ra:{query_id}:all", message_id=screen["message_id"])
        assert (await moderator.answer_to_last_press())["answer"] == t.error("already_reviewed")
        assert statuses(world.game, round_id) == [QueryStatus.DISCARDED]


# ---------------------------------------------------------------- the engine's queue, on SQLite and PostgreSQL
def _engine_miss(game, db, labeler, retriever, queries):
    from tests.helpers import labeled_round

    round_id = labeled_round(game, labeler, queries=queries)
    task = game.assignment.next_task(retriever, prefer="retriever")
    with Session(db) as session:
        target = session.get(RetrievalTask, task.task_id)
    assert target.label_round_id == round_id
    wrong = next(c.id for c in task.candidates if c.id != target.sticker_id)
    game.retrieval.submit_ranking(retriever, task.task_id, [wrong])
    return round_id


def test_the_review_queue_is_per_round_and_a_skip_goes_to_the_back(db, settings):
    from core.game import GameError
    from storage.models import OutboxMessage
    from tests.helpers import make_player, make_world

    game = make_world(db, settings, stickers=20, languages=("en", "zh"))
    moderator = make_player(game, 9)
    game.players.set_moderator(moderator)
    alice, bob, carol, dan = (make_player(game, i) for i in (1, 2, 3, 4))
    wen, li = make_player(game, 5, "zh"), make_player(game, 6, "zh")
    first = _engine_miss(game, db, alice, bob, ("so sick of this", "what a day"))
    second = _engine_miss(game, db, carol, dan, ("leave me alone",))
    third = _engine_miss(game, db, wen, li, ("烦死了",))
    with pytest.raises(GameError):
        game.moderation.review_round(alice)
    item = game.moderation.review_round(moderator)
    assert (item.round_id, item.position, item.waiting) == (first, 1, 3)
    assert [q.text for q in item.open] == ["so sick of this", "what a day"] and item.context
    assert item.sticker.id not in {s.id for s in item.retriever_picks}
    assert game.moderation.review_round(moderator, "zh").round_id == third
    assert game.moderation.review_round(moderator, "en", index=1).round_id == second
    assert game.moderation.review_round(moderator, "en", index=7).round_id == second  # past the end: the last
    game.moderation.skip_review_round(moderator, first)
    assert [game.moderation.review_round(moderator, index=i).round_id for i in range(3)] == [second, third, first]
    game.moderation.skip_review_round(moderator, second)  # skipped later: behind the earlier skip
    assert [game.moderation.review_round(moderator, index=i).round_id for i in range(3)] == [third, first, second]
    # decisions: the labeler hears of them once the round has no open query left
    [query_1, query_2] = [q.id for q in game.moderation.review_round(moderator, round_id=first).open]
    game.moderation.correct_query(moderator, query_1, "so tired of this")
    corrected = game.moderation.review_round(moderator, round_id=first)
    assert corrected.queries[0].text == "so tired of this" and corrected.queries[0].original == "so sick of this"
    with Session(db) as session:
        assert not session.exec(select(OutboxMessage).where(OutboxMessage.kind == "review_decided")).all()
    game.moderation.discard_query(moderator, query_2)
    with Session(db) as session:
        [notice] = session.exec(select(OutboxMessage).where(OutboxMessage.kind == "review_decided")).all()
    assert notice.player_id == alice and notice.payload["queries"] == [
        {"text": "so sick of this", "status": "corrected", "corrected": "so tired of this"},
        {"text": "what a day", "status": "discarded", "corrected": None}]
    assert [game.moderation.review_round(moderator, index=i).round_id for i in range(2)] == [third, second]
    with pytest.raises(GameError):
        game.moderation.skip_review_round(moderator, first)  # nothing of it is open any more
