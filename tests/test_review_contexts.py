"""Moderators decide imported chat contexts in the bot (`/review contexts`), on both shells and in
both languages: one screen per waiting context, Approve / Reject edit it in place to the next one,
paging, a double tap decided once, and a forged press by a non-moderator changing nothing."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from bots.messages.catalogue import catalogue
from storage.models import ChatContext, ContextStatus, Review
from tests.bots_world import MODERATOR, running_bot, texts

FRAMEWORKS = ["ptb", "aiogram"]
MESSAGES = {"en": ["did you see the game last night", "we lost again, unbelievable"],
            "zh": ["昨晚的比赛你看了吗", "我们又输了，真不敢相信"]}


def waiting_contexts(db, language: str, count: int = 2) -> list[int]:
    """Contexts of `language` as an import leaves them: waiting for a moderator (candidates). The demo
    pack has one context per sticker and language, all approved: the last ones are turned back."""
    ids = []
    with Session(db) as session:
        contexts = session.exec(select(ChatContext).where(ChatContext.language == language)
                                .order_by(ChatContext.id.desc()).limit(count)).all()
        for number, context in enumerate(sorted(contexts, key=lambda c: c.id)):
            context.status, context.conversation, context.message_id = ContextStatus.CANDIDATE, "67.json", 9000 + number
            context.messages = [{"sender": "A", "text": MESSAGES[language][0]},
                                {"sender": "B", "text": f"{MESSAGES[language][1]} {number}"}]
            session.add(context)
            ids.append(context.id)
        session.commit()
    return ids


def status_of(db, context_id: int) -> str:
    with Session(db) as session:
        return session.get(ChatContext, context_id).status


def buttons(entry, prefix=""):
    return [b["callback_data"] for row in (entry.get("reply_markup") or {}).get("inline_keyboard", []) for b in row
            if b["callback_data"].startswith(prefix)]


@pytest.mark.asyncio
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("language", ["en", "zh"])
async def test_a_moderator_approves_and_rejects_contexts_on_one_screen(game_db, tmp_path, framework, language):
    t = catalogue(language)
    first, second = waiting_contexts(game_db, language)
    async with running_bot(game_db, tmp_path, framework) as world:
        moderator = world.player(MODERATOR, language)
        screen = await moderator.send(f"/review contexts {language}")
        assert len(screen) == 1
        shown = texts(screen)[0]
        assert MESSAGES[language][0] in shown and "67.json #9000" in shown and "1/2" in shown
        approve = f"cx:{first}:approve:{language}"
        assert buttons(screen[0], "cx:") == [approve, f"cx:{first}:reject:{language}"]
        assert buttons(screen[0], "cp:") == [f"cp:2:{language}"]
        message_id = screen[0]["message_id"]

        # paging shows the second, and back
        page = await moderator.press(f"cp:2:{language}", message_id=message_id)
        assert page[0].get("edit") and "67.json #9001" in texts(page)[0]
        await moderator.press(f"cp:1:{language}", message_id=message_id)

        edited = await moderator.press(approve, message_id=message_id)
        assert [e.get("edit") for e in edited] == [True] and edited[0]["message_id"] == message_id
        assert t("contexts_approved", id=first) in texts(edited)[0] and "67.json #9001" in texts(edited)[0]
        assert status_of(game_db, first) == ContextStatus.APPROVED
        # a double tap on the old button decides nothing again
        await moderator.press(approve, message_id=message_id)
        assert (await moderator.answer_to_last_press())["answer"] == t("contexts_already_decided")

        done = await moderator.press(f"cx:{second}:reject:{language}", message_id=message_id)
        assert t("contexts_rejected", id=second) in texts(done)[0] and t("contexts_empty") in texts(done)[0]
        assert not buttons(done[0])
        assert status_of(game_db, second) == ContextStatus.REJECTED
        with Session(game_db) as session:
            actions = sorted(r.action for r in session.exec(select(Review).where(Review.context_id.in_([first, second]))))
        assert actions == ["approve_context", "reject_context"]
        assert texts(await moderator.send("/review contexts")) == [t("contexts_empty")]


@pytest.mark.asyncio
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_a_forged_context_decision_changes_nothing(game_db, tmp_path, framework):
    t = catalogue("en")
    [waiting] = waiting_contexts(game_db, "en", count=1)
    async with running_bot(game_db, tmp_path, framework) as world:
        mallory = world.player(666, "en")
        await mallory.send("/start")
        note = await mallory.send("/help")
        for data in (f"cx:{waiting}:approve:all", "cp:1:all"):
            await mallory.press(data, message_id=note[-1]["message_id"])
            assert (await mallory.answer_to_last_press())["answer"] == t("moderator_only"), data
        assert texts(await mallory.send("/review contexts")) == [t("moderator_only")]
        assert status_of(game_db, waiting) == ContextStatus.CANDIDATE
