"""Retrieval rounds in group chats (issue 22), through the sandbox over real HTTP, on both shells and
in both languages: a round posted with /round, members racing on its buttons, points by speed, the
labeler's feedback, judgments with setting='group', the group's /top; members who have not joined,
forged and replayed presses; the bot added, removed and the group migrated."""

from __future__ import annotations

import pytest
from sqlmodel import Session, col, select

from bots.messages.catalogue import catalogue
from core.game.group_rounds import GroupRounds
from core.nicknames import default_nickname
from storage.models import (
    GroupChat,
    GroupPick,
    GroupRound,
    GroupStatus,
    OutboxMessage,
    Player,
    RetrievalTask,
    ScoreEvent,
)
from tests.bots_world import TOKEN, running_bot, texts
from tests.test_bots import label_and_submit, onboard

pytestmark = pytest.mark.asyncio

FRAMEWORKS = ["ptb", "aiogram"]
LANGUAGES = ["en", "zh"]
GROUP = -100_777


class Group:
    """The group "chat_id" as its members see it, through the sandbox's simulation API."""

    def __init__(self, world, chat_id: int = GROUP):
        self.world, self.chat_id = world, chat_id

    async def _sim(self, action: str, **body) -> dict:
        response = await self.world.client.post(f"/sim/{action}", json={"token": TOKEN, "chat_id": self.chat_id,
                                                                        **body})
        assert response.status_code == 200, response.text
        return response.json()["result"]

    async def _finished(self, result: dict) -> dict:
        if result.get("update_id") is not None:
            await self.world.shell.runtime.wait_finished(result["update_id"], 20)
        return result

    async def create(self, added_by: int, **body) -> dict:
        return await self._finished(await self._sim("group", added_by=added_by, **body))

    async def say(self, user_id: int, text: str, language_code: str = "en") -> dict:
        return await self._finished(await self._sim("message", user_id=user_id, text=text,
                                                    first_name=f"P{user_id}", language_code=language_code))

    async def press(self, user_id: int, message_id: int, data: str, language_code: str = "en") -> dict:
        result = await self._finished(await self._sim("press", user_id=user_id, message_id=message_id, data=data,
                                                      first_name=f"P{user_id}", language_code=language_code))
        return next(e for e in await self.transcript() if e.get("callback_id") == result["callback_id"])

    async def transcript(self) -> list[dict]:
        response = await self.world.client.get("/sim/transcript", params={"token": TOKEN, "chat_id": self.chat_id})
        return response.json()["result"]

    async def message(self, message_id: int) -> dict:
        """The message as it stands now (its latest edit)."""
        return [e for e in await self.transcript() if e.get("by") == "bot" and e.get("message_id") == message_id][-1]

    async def bot_messages(self) -> list[dict]:
        return [e for e in await self.transcript() if e.get("by") == "bot" and not e.get("edit")]


def buttons(entry: dict) -> list[str]:
    return [b["callback_data"] for row in (entry.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]


def player_id(world, user_id: int) -> int:
    return world.game.players.find(user_id).id


async def joined_members(world, language: str, user_ids) -> None:
    for user_id in user_ids:
        await onboard(world.player(user_id, language), language)


async def posted_round(world, group: Group, user_id: int, language: str) -> tuple[dict, GroupRound]:
    before = len(await group.bot_messages())
    await group.say(user_id, f"/round {language}")
    message = (await group.bot_messages())[before]
    assert "photo" in message and any(b.startswith("gp:") for b in buttons(message))
    with Session(world.game.db.engine) as session:
        found = session.exec(select(GroupRound).where(GroupRound.chat_id == group.chat_id)
                             .order_by(col(GroupRound.id).desc())).first()
    assert found.message_id == message["message_id"]
    return message, found


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_three_members_race_and_the_fastest_correct_ones_score(game_db, tmp_path, framework, language):
    t = catalogue(language)
    async with running_bot(game_db, tmp_path, framework) as world:
        labeler = world.player(1, language)
        await onboard(labeler, language)
        await label_and_submit(labeler, language, ["first idea", "second idea"])
        await joined_members(world, language, (2, 3, 4, 5))
        group = Group(world)
        await group.create(added_by=2)
        hello = (await group.bot_messages())[-1]
        assert hello["text"] == t("group_hello")
        message, found = await posted_round(world, group, 2, language)
        assert "first idea" in message["caption"] and "second idea" in message["caption"]
        assert message["caption"].startswith(t("group_round_title", seconds=60))
        target = found.candidate_ids.index(found.sticker_id) + 1
        wrong = 1 if target != 1 else 2
        data = lambda n: f"gp:{found.id}:{n}"  # noqa: E731
        # 3 right, 5 wrong, 2 right, 4 right: 3/2/1 by speed, and the third right one ends the round early.
        first = await group.press(3, message["message_id"], data(target), language)
        assert first["answer"] == t("group_pick_locked", n=target) and not first["alert"]
        live = await group.message(message["message_id"])
        assert default_nickname(player_id(world, 3), language) in live["caption"]
        assert buttons(live) and live["caption"] != message["caption"]
        await group.press(5, message["message_id"], data(wrong), language)
        again = await group.press(3, message["message_id"], data(wrong), language)  # one pick each
        assert again["alert"] and again["answer"] == t.error("already_picked")
        await group.press(2, message["message_id"], data(target), language)
        await group.press(4, message["message_id"], data(target), language)
        # The round closed; the message shows the answer, who found it (with points) and who missed.
        await world.shell.runtime.deliver_outbox_once()
        final = await group.message(message["message_id"])
        assert not buttons(final)
        assert final["caption"].startswith(t("group_answer", n=target))
        for user, points in ((3, 3), (2, 2), (4, 1)):
            assert t("group_found_one", name=default_nickname(player_id(world, user), language),
                     points=points) in final["caption"]
        assert t("group_missed_by", names=default_nickname(player_id(world, 5), language)) in final["caption"]
        late = await group.press(5, message["message_id"], data(target), language)
        assert late["alert"] and late["answer"] == t.error("group_round_over")
        with Session(world.game.db.engine) as session:
            picks = session.exec(select(GroupPick).where(GroupPick.round_id == found.id)
                                 .order_by(GroupPick.id)).all()
            assert [(p.player_id, p.points) for p in picks] == [
                (player_id(world, 3), 3), (player_id(world, 5), 0), (player_id(world, 2), 2), (player_id(world, 4), 1)]
            tasks = session.exec(select(RetrievalTask).where(col(RetrievalTask.id).in_([p.task_id for p in picks]))).all()
            assert len(tasks) == 4 and {task.setting for task in tasks} == {"group"}
            assert {task.status for task in tasks} == {"answered"}
            earned = {row.player_id: row.points for row in session.exec(select(ScoreEvent).where(
                ScoreEvent.reason == "retriever_hit"))}
            assert earned == {player_id(world, 3): 3, player_id(world, 2): 2, player_id(world, 4): 1}
            labeler_points = sorted(row.points for row in session.exec(select(ScoreEvent).where(
                ScoreEvent.player_id == player_id(world, 1), ScoreEvent.reason == "labeler_hit")))
            assert labeler_points == [1, 2, 3]
            feedback = session.exec(select(OutboxMessage.kind).where(
                OutboxMessage.player_id == player_id(world, 1))).all()
            assert sorted(feedback) == ["feedback_hit"] * 3 + ["feedback_miss"]
        # The labeler is told as after a private retrieval: the same notices, held while they are in a task.
        await world.shell.runtime.deliver_outbox_once()
        with Session(world.game.db.engine) as session:
            assert {m.status for m in session.exec(select(OutboxMessage).where(
                OutboxMessage.player_id == player_id(world, 1)))} <= {"held", "sent"}
        # The group's own table: /top keeps the group's pace (the hello was the last post), then answers.
        await group.say(3, "/top")
        assert "text" not in (await group.bot_messages())[-1] or not (await group.bot_messages())[-1]["text"] \
            .startswith(t("group_top_week"))
        world.game.settings.rules.group_pace_seconds = 0
        await group.say(3, "/top")
        table = (await group.bot_messages())[-1]["text"]
        assert table.startswith(t("group_top_week"))
        assert t("top_row", rank=1, name=default_nickname(player_id(world, 3), language), points=3) in table
        assert t("top_row", rank=3, name=default_nickname(player_id(world, 4), language), points=1) in table
        # The same points count on the global board.
        assert world.game.standings.player_stats(player_id(world, 3)).points >= 3


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_unconsented_forged_and_replayed_presses_change_nothing(game_db, tmp_path, framework):
    t = catalogue("en")
    async with running_bot(game_db, tmp_path, framework) as world:
        labeler = world.player(1, "en")
        await onboard(labeler, "en")
        await label_and_submit(labeler, "en", ["first idea"])
        await joined_members(world, "en", (2,))
        group = Group(world)
        await group.create(added_by=2)
        message, found = await posted_round(world, group, 2, "en")
        target = found.candidate_ids.index(found.sticker_id) + 1

        def counts():
            with Session(world.game.db.engine) as session:
                return (len(session.exec(select(GroupPick)).all()), len(session.exec(select(ScoreEvent)).all()),
                        len(session.exec(select(Player)).all()), len(session.exec(select(RetrievalTask)).all()))

        before = counts()
        # Someone who never started the bot: an alert with the Join link, and nothing recorded, not even them.
        stranger = await group.press(66, message["message_id"], f"gp:{found.id}:{target}")
        assert stranger["alert"] and stranger["answer"] == t("group_join_first")
        assert stranger["url"] == f"https://t.me/sticktionary_test_bot?start=g{GROUP}"
        assert counts() == before and world.game.players.find(66) is None
        join = await group.press(66, message["message_id"], "gj")
        assert join["url"].endswith(f"?start=g{GROUP}")
        # The link brings them through onboarding in a private chat, and back.
        newcomer = world.player(66, "en")
        welcome = await newcomer.send(f"/start g{GROUP}")
        assert texts(welcome)[0] == t("group_join_welcome")
        before = counts()  # the newcomer is a player now (not onboarded yet: no language, no consent)
        # Forged presses: a grid number out of the grid, a round of another group, garbage.
        for data in (f"gp:{found.id}:99", f"gp:{found.id + 1}:1", "gp:0:1", f"gp:{found.id}:-1", "gp:x"):
            answer = await group.press(2, message["message_id"], data)
            assert answer.get("answer") != t("group_pick_locked", n=target), data
        assert counts() == before
        # The round's labeler sits it out.
        own = await group.press(1, message["message_id"], f"gp:{found.id}:{target}")
        assert own["answer"] == t.error("own_sticker") and counts() == before
        # A real press, then the same update again (a webhook retry): recorded once.
        await group.press(2, message["message_id"], f"gp:{found.id}:{target}")
        update = next(u for u in [await _last_press_update(world)] if u)
        await world.client.post("/sim/redeliver", json={"token": TOKEN, "update": update})
        await world.shell.runtime.wait_finished(update["update_id"], 10)
        assert world.game.group_rounds.close(found.id) and not world.game.group_rounds.close(found.id)
        with Session(world.game.db.engine) as session:
            picks = session.exec(select(GroupPick)).all()
            assert [(p.player_id, p.points) for p in picks] == [(player_id(world, 2), 3)]
            assert len(session.exec(select(ScoreEvent).where(ScoreEvent.reason == "retriever_hit")).all()) == 1
        # Nothing of the group's conversation is stored: with privacy mode on, plain messages never reach
        # the bot; with it off they do, and are dropped before the inbox, unread.
        said = await group.say(2, "my secret plans for tonight")
        assert said["update_id"] is None
        heard = await group._sim("message", user_id=2, text="my other secret", privacy=False)
        await group.say(2, "/top")  # handled after the one before it arrived
        from storage.models import InboxUpdate
        with Session(world.game.db.engine) as session:
            assert session.get(InboxUpdate, (world.shell.runtime.bot_key, heard["update_id"])) is None
            payloads = [str(row.payload) for row in session.exec(select(InboxUpdate))]
        assert heard["update_id"] is not None and not any("secret" in payload for payload in payloads)


async def test_a_group_update_is_cut_to_what_the_game_reads():
    from bots.messages.group_privacy import group_safe

    chat = {"id": -5, "type": "supergroup", "title": "Our secret club"}
    member = {"id": 7, "is_bot": False, "first_name": "Kim", "last_name": "Lee", "username": "kimlee"}
    command = {"update_id": 1, "message": {"message_id": 3, "date": 1, "chat": chat, "from": member,
                                           "text": "/round en", "reply_to_message": {"text": "a private joke"}}}
    kept = group_safe(command)
    assert kept == {"update_id": 1, "message": {"message_id": 3, "date": 1, "chat": {"id": -5, "type": "supergroup"},
                                                "from": {"id": 7, "is_bot": False, "first_name": "Kim"},
                                                "text": "/round en"}}
    assert group_safe({"update_id": 2, "message": {**command["message"], "text": "hello all"}}) is None
    assert group_safe({"update_id": 3, "edited_message": command["message"]}) is None
    private = {"update_id": 4, "message": {**command["message"], "chat": {"id": 7, "type": "private"}}}
    assert group_safe(private) is private  # a private chat's update is the game's: kept whole


async def _last_press_update(world) -> dict | None:
    """The newest button press the bot got, as Telegram would redeliver it."""
    from storage.models import InboxUpdate
    with Session(world.game.db.engine) as session:
        row = session.exec(select(InboxUpdate).order_by(col(InboxUpdate.update_id).desc())).first()
    return row.payload if row is not None and "callback_query" in row.payload else None


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_the_bot_removed_a_second_round_and_the_group_migrating(game_db, tmp_path, framework):
    t = catalogue("zh")
    async with running_bot(game_db, tmp_path, framework) as world:
        labeler = world.player(1, "zh")
        await onboard(labeler, "zh")
        await label_and_submit(labeler, "zh", ["第一个想法"])
        await joined_members(world, "zh", (2,))
        group = Group(world)
        await group.create(added_by=2)
        message, found = await posted_round(world, group, 2, "zh")
        # A second /round while one is open points at it (once per the group's pace), posts no new round.
        world.game.settings.rules.group_pace_seconds = 0
        await group.say(2, "/round")
        assert (await group.bot_messages())[-1]["text"] == t("group_round_already_open")
        with Session(world.game.db.engine) as session:
            assert len(session.exec(select(GroupRound)).all()) == 1
        # Private commands in a group are not answered there.
        count = len(await group.bot_messages())
        await group.say(2, "/play")
        assert len(await group.bot_messages()) == count
        # The group becomes a supergroup: its round and table follow it.
        new_id = GROUP - 1_000_000_000_000
        result = await group._sim("migrate", new_chat_id=new_id, tell=True)
        await world.shell.runtime.wait_finished(result["update_id"], 10)
        with Session(world.game.db.engine) as session:
            assert session.get(GroupChat, GROUP).status == GroupStatus.MIGRATED
            assert session.get(GroupChat, new_id).status == GroupStatus.ACTIVE
            assert session.get(GroupRound, found.id).chat_id == new_id
        # Removed from the supergroup: recorded; the open round still closes and scores, unposted.
        moved = Group(world, new_id)
        await moved.create(added_by=2, status="kicked")
        with Session(world.game.db.engine) as session:
            assert session.get(GroupChat, new_id).status == GroupStatus.REMOVED
        assert world.game.group_rounds.close(found.id)
        with Session(world.game.db.engine) as session:
            assert session.exec(select(OutboxMessage).where(OutboxMessage.kind == "group_round_closed")).first() is None


async def test_a_round_closes_on_time_in_the_background(game_db, tmp_path):
    async with running_bot(game_db, tmp_path, "ptb") as world:
        world.game.settings.rules.group_round_seconds = 1.5
        labeler = world.player(1, "en")
        await onboard(labeler, "en")
        await label_and_submit(labeler, "en", ["first idea"])
        await joined_members(world, "en", (2,))
        group = Group(world)
        await group.create(added_by=2)
        message, found = await posted_round(world, group, 2, "en")
        await group.press(2, message["message_id"], f"gp:{found.id}:1")
        import asyncio
        for _ in range(100):  # the bots' closer closes it (no one calls close here)
            with Session(world.game.db.engine) as session:
                if session.get(GroupRound, found.id).status == "closed":
                    break
            await asyncio.sleep(0.1)
        await world.shell.runtime.deliver_outbox_once()
        final = await group.message(message["message_id"])
        answer = found.candidate_ids.index(found.sticker_id) + 1
        assert not buttons(final) and final["caption"].startswith(catalogue("en")("group_answer", n=answer))
        assert isinstance(world.game.group_rounds, GroupRounds)


async def test_the_bot_losing_its_rights_or_its_place_is_read_from_telegram():
    from bots.messages.incoming import IncomingKind, incoming_from_update

    def change(**member) -> dict:
        return {"update_id": 9, "my_chat_member": {"chat": {"id": -5, "type": "group"}, "from": {"id": 7, "first_name": "K"},
                                                   "date": 1, "new_chat_member": {"user": {"id": 1}, **member}}}

    muted = incoming_from_update(change(status="restricted", can_send_messages=False))
    assert (muted.kind, muted.member_status, muted.in_group) == (IncomingKind.GROUP_MEMBER, "muted", True)
    assert incoming_from_update(change(status="restricted", can_send_messages=True)).member_status == "restricted"
    assert incoming_from_update(change(status="kicked")).member_status == "kicked"
    private = change(status="kicked")
    private["my_chat_member"]["chat"] = {"id": 7, "type": "private"}
    assert incoming_from_update(private) is None  # a player blocking the bot is learnt from sends
