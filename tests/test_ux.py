"""The message budget of a game (issue 11): the fixed script of `sticktionary bench ux`, smaller,
played through the sandbox on both shells and in both languages, counted from the transcript; and
the screens around it (one live screen per task, outcomes on finished screens, /start twice,
/lang mid-task, /stop, /forget, stale buttons)."""

from __future__ import annotations

import pytest

from bots.messages.catalogue import catalogue
from offline.bench.ux import current_messages, live_buttons, run_ux
from tests.bots_world import prepare_database

FRAMEWORKS = ["ptb", "aiogram"]
TASK_BUTTONS = ("lx:", "ls:", "lr:", "pd:", "pk:", "pu:", "ps:", "pg:")


def live_screens(transcript):
    """Messages that offer task buttons now."""
    return [e for e in current_messages(transcript).values() if any(
        b.startswith(TASK_BUTTONS) for b in _buttons(e))]


def _buttons(entry):
    return [b["callback_data"] for row in (entry.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]


def text_of(entry):
    return entry.get("text") or entry.get("caption") or ""


@pytest.mark.asyncio
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_a_game_costs_at_most_two_messages_a_task(tmp_path, sqlite_template, framework):
    db = prepare_database(tmp_path, sqlite_template)
    url = str(db.url)
    db.dispose()
    checks = {}

    async def then(played, shell, deliver_outbox):
        for script_player in played["players"]:
            player, t = script_player.player, catalogue(script_player.language)
            transcript = await player.transcript()
            # one live screen at a time: the current task's text (labeler) or grid (retriever)
            assert len(live_screens(transcript)) == 1
            # every finished round carries its outcome, without buttons
            finished = [e for e in current_messages(transcript).values() if text_of(e).startswith(("✅", "🎯"))]
            assert finished and all(not _buttons(e) for e in finished)
            assert any(e.get("edit") and text_of(e).startswith("✅") for e in transcript)
            # /start twice: the current screen moves down, never a second live one
            for _ in range(2):
                await player.send("/start")
            after = await player.transcript()
            assert len(live_screens(after)) == 1
            moved = [e for e in current_messages(after).values() if text_of(e) == t("screen_moved")]
            assert moved and all(not _buttons(e) for e in moved)
            # a stale button (on a finished screen) answers politely and re-shows the current screen
            old = next((m, b) for m, b in live_buttons(transcript[:10], "lx:") + live_buttons(transcript[:10], "pd:"))
            before = len(after)
            await player.press(old[1], message_id=old[0])
            pressed = await player.transcript()
            assert pressed[before].get("answer")
            assert len(live_screens(pressed)) == 1 and any(not e.get("edit") for e in pressed[before + 1:])
            # /lang in the middle of a task: the task is released on its screen, then the chooser
            released = await player.send("/lang")
            assert [text_of(e) for e in released] == [t("task_released"), t("choose_language")]
            assert released[0].get("edit") and not _buttons(released[0])
            assert live_screens(await player.transcript()) == []
            await player.press(f"lang:{script_player.language}")
            assert len(live_screens(await player.transcript())) == 1
            # /stop says what became of the open task
            assert [text_of(e) for e in await player.send("/stop")][-1] == t("stopped_released")
            assert [text_of(e) for e in await player.send("/stop")] == [t("stopped_nothing")]
            # /forget asks first
            asked = await player.send("/forget")
            assert [text_of(e) for e in asked] == [t("forget_confirm")]
            assert [text_of(e) for e in await player.press("fg:no")] == [t("forget_cancelled")]
            assert [text_of(e) for e in await player.press("fg:yes", message_id=asked[0]["message_id"])] == [
                t("forgotten")]
        checks["done"] = True

    result, _ = await run_ux(framework, url, tmp_path, ["en", "zh"], labels=4, retrievals=4, then=then)
    assert checks.get("done")
    assert result["tasks"] == 16 and result["label_rounds"] >= 4 and result["retrievals"] >= 4
    assert result["removals"] >= 2 and result["reviewed"] == result["to_review"]  # every miss reviewed
    assert result["refused_calls"] == 0  # nothing the bot sent was refused ("message is not modified"…)
    print(result)
    assert result["messages_per_task"] <= 2.0, result  # new messages to the players, per task they finished
    assert result["edits"] > result["bot_messages"]  # the screens change in place


@pytest.mark.asyncio
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_a_screen_whose_message_is_gone_is_sent_anew_and_an_unchanged_edit_is_no_error(
        tmp_path, sqlite_template, framework):
    from sqlmodel import Session, select

    from storage.models import LabelRound, LiveScreen, Query
    from tests.bots_world import TOKEN, running_bot
    from tests.test_bots import onboard

    db = prepare_database(tmp_path, sqlite_template)
    t = catalogue("en")
    async with running_bot(db, tmp_path, framework) as world:
        player = world.player(1, "en")
        screen = await onboard(player, "en")
        text_id, photo_id = screen[1]["message_id"], screen[2]["message_id"]
        with Session(db) as session:
            [row] = session.exec(select(LiveScreen)).all()
            assert (row.text_message_id, row.photo_message_id, row.state) == (text_id, photo_id, "live")
            sticker_id = session.get(LabelRound, int(row.screen.split(":")[1])).sticker_id
            seed = session.exec(select(Query.text).where(Query.sticker_id == sticker_id,
                                                         Query.language == "en")).first()
        # the same refused query twice: the second edit changes nothing, which Telegram refuses as
        # "message is not modified": that is success, and nothing new is sent
        first = await player.send(seed)
        assert [e["message_id"] for e in first] == [text_id]
        stats = (await world.client.get("/sim/stats")).json()["result"]
        assert await player.send(seed) == []
        after = (await world.client.get("/sim/stats")).json()["result"]
        assert after.get("not_modified:editMessageText", 0) == stats.get("not_modified:editMessageText", 0) + 1
        assert after.get("error:400", 0) == stats.get("error:400", 0)
        # the player deleted the screen's text: the next change sends it anew, and it is recorded
        await world.client.post(f"/bot{TOKEN}/deleteMessage", json={"chat_id": 1, "message_id": text_id})
        anew = await player.send("such a happy day")
        sent = [e for e in anew if not e.get("edit")]
        assert len(sent) == 1 and "such a happy day" in sent[0]["text"] and t("label_prompt") in sent[0]["text"]
        with Session(db) as session:
            assert session.exec(select(LiveScreen)).one().text_message_id == sent[0]["message_id"]
    db.dispose()


@pytest.mark.asyncio
async def test_held_notices_fit_the_next_screens_and_none_is_lost_or_shown_twice(tmp_path, sqlite_template):
    from sqlmodel import Session, select

    from bots.messages.limits import utf16_units
    from bots.screens.task import NOTICE_ROOM
    from storage.models import OutboxMessage, Player
    from tests.bots_world import running_bot
    from tests.test_bots import onboard

    db = prepare_database(tmp_path, sqlite_template)
    t = catalogue("en")
    async with running_bot(db, tmp_path, "ptb") as world:
        player = world.player(1, "en")
        await onboard(player, "en")
        with Session(db) as session:
            player_id = session.exec(select(Player.id).where(Player.telegram_user_id == 1)).one()
            for n in range(12):
                session.add(OutboxMessage(dedupe_key=f"feedback:{n}", kind="feedback_hit", player_id=player_id,
                                          payload={"rank": 1, "points": 100 + n, "queries": [f"q{n}"]}))
            session.commit()
        # the player is in a task: the outbox holds them instead of sending them into it
        while await world.shell.runtime.deliver_outbox_once():
            pass
        assert await player.replies(settle=0.2, timeout=0.5) == []
        with Session(db) as session:
            assert {m.status for m in session.exec(select(OutboxMessage))} == {"held"}
        heads: list[str] = []
        for _ in range(12):
            live = live_screens(await player.transcript())
            skip = next(b for e in live for b in _buttons(e) if b.startswith(("lx:", "ps:")))
            after = await player.press(skip, message_id=live[0]["message_id"])
            head = text_of(next(e for e in after if not e.get("edit")))
            notices = head[:head.index(t("screen_round", round=1))].strip()  # skips do not count as rounds
            if not notices:
                break
            assert utf16_units(notices) <= NOTICE_ROOM
            heads.append(notices)
        assert len(heads) > 1  # they did not all fit in one screen's room

        def notice(n: int) -> str:
            return t("feedback_hit", query=f"“q{n}”", rank=1, points=100 + n)

        for n in range(12):  # every one shown, once, oldest first
            assert sum(head.count(notice(n)) for head in heads) == 1
        order = [head.index(notice(n)) + 10_000 * i
                 for n in range(12) for i, head in enumerate(heads) if notice(n) in head]
        assert order == sorted(order)
        with Session(db) as session:
            assert {m.status for m in session.exec(select(OutboxMessage))} == {"sent"}
    db.dispose()


def test_bench_ux_prints_the_figures():
    import json

    from typer.testing import CliRunner

    from sticktionary.cli import app

    result = CliRunner().invoke(app, ["bench", "ux", "--languages", "en", "--labels", "1", "--retrievals", "1",
                                      "--framework", "aiogram", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert {"tasks", "bot_messages", "edits", "messages_per_task"} <= set(figures) and figures["tasks"] == 2
    assert CliRunner().invoke(app, ["bench", "ux", "--framework", "telethon"]).exit_code != 0


@pytest.mark.asyncio
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_a_screen_whose_task_expired_says_so_when_pressed(tmp_path, sqlite_template, framework):
    from sqlmodel import Session, select

    from storage.models import LiveScreen, Player
    from tests.bots_world import running_bot
    from tests.test_bots import onboard

    db = prepare_database(tmp_path, sqlite_template)
    t = catalogue("zh")
    async with running_bot(db, tmp_path, framework) as world:
        player = world.player(1, "zh")
        screen = await onboard(player, "zh")
        text = screen[1]
        with Session(db) as session:
            player_id = session.exec(select(Player.id).where(Player.telegram_user_id == 1)).one()
        world.game.players.pause(player_id)  # the round is closed behind the screen's back (as an expiry job does)
        skip = next(b for b in _buttons(text) if b.startswith("lx:"))
        after = await player.press(skip, message_id=text["message_id"])
        assert (await player.answer_to_last_press())["answer"] == t.error("round_closed")
        expired = current_messages(await player.transcript())[text["message_id"]]
        assert text_of(expired) == t("screen_expired") and not _buttons(expired)
        assert any(not e.get("edit") for e in after)  # and the current screen, anew
        assert len(live_screens(await player.transcript())) == 1
        with Session(db) as session:
            states = {row.screen: row.state for row in session.exec(select(LiveScreen))}
        assert states[f"label:{skip.split(':')[1]}"] == "expired" and "live" in states.values()
    db.dispose()
