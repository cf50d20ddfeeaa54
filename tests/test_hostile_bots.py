"""Hostile input through the real bots over the sandbox (which refuses what Telegram refuses):
oversized imported data, broken text, updates without a sender, forged and out-of-range buttons.
After each, the bot still answers the next update."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from bots.messages.catalogue import catalogue
from bots.messages.limits import TEXT_LIMIT, utf16_units
from bots.screens.help import rule_terms
from storage.models import ChatContext, Player
from storage.settings import Settings as _Settings
from tests.bots_world import TOKEN, running_bot
from tests.test_bots import onboard, texts

DEFAULT_RULES = rule_terms(_Settings(_env_file=None))

pytestmark = pytest.mark.asyncio


async def still_answers(player, t) -> None:
    [answer] = texts(await player.send("/help"))
    assert answer.startswith(t("help", **DEFAULT_RULES))  # the rules, then the prizes


@pytest.mark.parametrize("framework", ["ptb", "aiogram"])
async def test_hostile_updates_never_wedge_a_bot(game_db, tmp_path, framework, caplog):
    t = catalogue("en")
    # Imported data far beyond what a screen can show: a 5,980-character message in every context.
    with Session(game_db) as session:
        for context in session.exec(select(ChatContext)).all():
            messages = [dict(m) for m in context.messages]
            first_text = next(m for m in messages if m["text"])
            first_text["text"] = ("a very long message " * 299)[:5980] + " END"
            session.exec(update(ChatContext).where(ChatContext.id == context.id).values(messages=messages))
        session.commit()
    caplog.set_level(logging.WARNING, logger="bots.messages.incoming")
    async with running_bot(game_db, tmp_path, framework) as world:
        alice = world.player(1)
        screen = await onboard(alice, "en")
        # the label screen arrived (the sandbox refuses a text over 4,096), shortened visibly, question intact
        label = next(text for text in texts(screen) if t("label_prompt") in text)
        # the context is cut at its start: the prompt and the taboo list after it always show
        assert utf16_units(label) <= TEXT_LIMIT and "…" in label
        assert label.index("…") < label.index(t("label_prompt"))
        assert "photo" in screen[-1]  # the sticker, on the photo the previews replace

        # a lone surrogate (valid JSON, "\\ud83d", but no text) gets a clear reply, not silence
        body = json.dumps({"token": TOKEN, "user_id": 1, "text": "broken \ud83d emoji", "first_name": "P\udc00"})
        sent = await world.client.post("/sim/message", content=body, headers={"Content-Type": "application/json"})
        assert texts(await alice._after(sent.json()["result"]["update_id"])) == [t.error("invalid_chars")]
        await still_answers(alice, t)

        # invisible characters and controls in a query: refused with a reason, or removed
        refused = texts(await alice.send("two\nlines"))  # said on the live screen
        assert len(refused) == 1 and refused[0].endswith(t("screen_warning", query="two lines",
                                                                text=t.error("control_chars")))
        preview = await alice.send("gl\u2060ee\u00adful\u200d times")
        assert "“gleeful times”" in texts(preview)[-1], texts(preview)

        # out-of-range, non-canonical and oversized button data: a polite "stale", nothing else
        message_id = (await alice.transcript())[-1]["message_id"]
        for data in ("ls:999999999999999999", "ls:-1", "ls:01", "pk:1:0", "pk:1:101", "lang:fr", "consent:1",
                     "ls:1:2", "\u00e9" * 32, "ls:" + "9" * 60):
            await alice.press(data, message_id=message_id)
            assert (await alice.answer_to_last_press())["answer"] == t("stale"), data
        await still_answers(alice, t)

        # an update without a sender is skipped with one log line, and creates no player
        before = len(await alice.transcript())
        bot = world.sandbox.bots[TOKEN]
        orphan = world.sandbox._update(bot, {"message": {"message_id": 990, "date": 1, "text": "/play",
                                                         "chat": {"id": 1, "type": "private"}}})
        press = world.sandbox._update(bot, {"callback_query": {
            "id": "x1", "chat_instance": "1", "data": "next", "from": {"id": 0, "is_bot": False, "first_name": "Z"}}})
        for hostile in (orphan, press):
            await world.client.post("/sim/redeliver", json={"token": TOKEN, "update": hostile})
        await still_answers(alice, t)
        assert len(await alice.transcript()) - before == 2  # only /help and its answer
        skipped = [r.getMessage() for r in caplog.records if r.name == "bots.messages.incoming"]
        assert any(f"update {orphan['update_id']}:" in line and "without a sender" in line for line in skipped)
        assert sum(f"update {press['update_id']}:" in line for line in skipped) == 1, skipped  # logged once
        with Session(game_db) as session:
            assert session.exec(select(Player).where(Player.telegram_user_id == 0)).first() is None
        stats = (await world.client.get("/sim/stats")).json()["result"]
        assert stats.get("error:400", 0) == 0, stats  # nothing we sent was refused by the "Telegram" side


@pytest.mark.parametrize("framework", ["ptb", "aiogram"])
async def test_an_update_no_framework_can_read_is_skipped_once(game_db, tmp_path, framework, caplog):
    """`"date": "not a date"` fails python-telegram-bot's and aiogram's parsing. It is stored,
    acknowledged, skipped with one log line, and the bot goes on (it was fetched thousands of times)."""
    from storage.models import InboxStatus, InboxUpdate

    t = catalogue("en")
    caplog.set_level(logging.WARNING, logger="bots.inbox")
    async with running_bot(game_db, tmp_path, framework) as world:
        alice = world.player(1)
        await onboard(alice, "en")
        bot = world.sandbox.bots[TOKEN]
        unreadable = world.sandbox._update(bot, {"message": {
            "message_id": 991, "date": "not a date", "text": "/play", "chat": {"id": 1, "type": "private"},
            "from": {"id": 1, "is_bot": False, "first_name": "P1"}}})
        await world.client.post("/sim/redeliver", json={"token": TOKEN, "update": unreadable})
        await still_answers(alice, t)
        await world.shell.runtime.wait_finished(unreadable["update_id"], 10)
        with Session(game_db) as session:
            row = session.get(InboxUpdate, ("123456", unreadable["update_id"]))
            assert row.status == InboxStatus.SKIPPED
        assert bot.confirmed_below > unreadable["update_id"]  # acknowledged: Telegram will not send it again
        lines = [r.getMessage() for r in caplog.records if "could not be read" in r.getMessage()]
        assert len(lines) == 1, lines
        assert TOKEN.split(":")[1] not in lines[0]
