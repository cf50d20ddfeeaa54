"""The conversation suite: every screen, run against both shells over real HTTP to the sandbox,
in both languages. Players are simulated through the sandbox's simulation API."""

from __future__ import annotations

import asyncio
import os
import re

import httpx
import pytest
from sqlmodel import Session, col, select

from bots.messages.catalogue import catalogue, quoted
from bots.screens.help import rule_terms
from core.nicknames import default_nickname
from offline.sandbox.players import SandboxPlayer
from storage.models import Player, RetrievalTask, ScoreEvent
from storage.settings import Settings as _Settings
from tests.bots_world import MODERATOR, TOKEN, running_bot, texts

DEFAULT_RULES = rule_terms(_Settings(_env_file=None))

pytestmark = pytest.mark.asyncio

FRAMEWORKS = ["ptb", "aiogram"]
FAULT_ROUNDS = int(os.environ.get("STICKTIONARY_FAULT_ROUNDS", "100"))
LANGUAGES = ["en", "zh"]


async def onboard(player, language):
    t = catalogue(language)
    replies = await player.send("/start")
    assert t("choose_language").split("!")[0].split("！")[0] in texts(replies)[0]
    replies = await player.press(f"lang:{language}")
    assert texts(replies)[-1] == t("consent")
    return await player.press("consent")


async def label_and_submit(player, language, queries):
    for query in queries:
        await player.send(query)
    transcript = await player.transcript()
    submit = next(b for e in reversed(transcript) for b in player.buttons(e) if b.startswith("ls:"))
    return await player.press(submit)


def target_of(world, task_id):
    with Session(world.game.db.engine) as session:
        return session.get(RetrievalTask, task_id).sticker_id


def live_text(entries):
    """The labeler's live text message among `entries` (it carries the round's buttons)."""
    return next(e for e in reversed(entries) if "text" in e and any(
        b.startswith(("ls:", "lx:")) for b in SandboxPlayer.buttons(e)))


def grid_of(entries):
    return next(e for e in reversed(entries)
                if "photo" in e and any(b.startswith("pk:") for b in SandboxPlayer.buttons(e)))


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_onboarding_and_a_labeler_round(game_db, tmp_path, framework, language):
    t = catalogue(language)
    async with running_bot(game_db, tmp_path, framework) as world:
        player = world.player(1, language)
        screen = await onboard(player, language)
        # The consent message becomes the welcome (an edit), then the task: one text, one photo.
        assert screen[0].get("edit") and texts(screen)[0].endswith(t("welcome"))
        assert [bool(e.get("edit")) for e in screen[1:]] == [False, False]
        assert t("label_context", context="").split("\n")[0] in texts(screen)[1]
        assert texts(screen)[1].startswith(t("screen_round", round=1))  # the progress header
        assert t("label_prompt") in texts(screen)[1]
        assert "photo" in screen[-1]  # the sticker, as a photo that the previews replace in place
        sticker_photo = screen[-1]["message_id"]
        preview = await player.send("happy times" if language == "en" else "开心的时候")
        assert all(e.get("edit") for e in preview)  # the screen is edited, nothing new is sent
        assert "happy times" in texts(preview)[-1] or "开心的时候" in texts(preview)[-1]
        assert preview[-1]["message_id"] == sticker_photo
        # taboo: a query already collected for this sticker
        round_id = int(player_button(player, live_text(preview), "ls:").split(":")[1])
        with Session(world.game.db.engine) as session:
            from storage.models import LabelRound, Query
            sticker_id = session.get(LabelRound, round_id).sticker_id
            seed = session.exec(select(Query.text).where(Query.sticker_id == sticker_id,
                                                         Query.language == language)).first()
        refused = await player.send(seed)  # said on the live screen, not in a new message
        assert len(refused) == 1 and refused[0].get("edit")
        assert texts(refused)[0].endswith(t("screen_warning", query=seed, text=t.error("taboo")))
        empty_emoji = await player.send("😂😂")
        assert len(empty_emoji) == 1 and empty_emoji[0].get("edit")
        assert texts(empty_emoji)[0].endswith(t("screen_warning", query="😂😂", text=t.error("only_emoji")))
        # remove the first query, add another, submit
        remove = next(b for b in player.buttons(live_text(preview)) if b.startswith("lr:"))
        removed = await player.press(remove)
        # both parts edited: the text loses the query, the photo goes back to the sticker itself
        assert [e.get("edit") for e in removed] == [True, True] and not any(
            b.startswith("lr:") for b in player.buttons(removed[0]))
        assert removed[1]["message_id"] == sticker_photo and not removed[1].get("caption")
        good = "good mood" if language == "en" else "心情好"
        await player.send(good)
        done = await label_and_submit(player, language, [])
        # the outcome is written onto the finished screen, its buttons gone; the next task is new
        assert done[0].get("edit") and not player.buttons(done[0])
        assert texts(done)[0] == t("round_submitted", count=1, round=1, queries=f"“{good}”")
        assert not any(e.get("edit") for e in done[1:])


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_retrieval_ranking_and_feedback(game_db, tmp_path, framework, language):
    t = catalogue(language)
    async with running_bot(game_db, tmp_path, framework) as world:
        alice, bob = world.player(1, language), world.player(2, language)
        await onboard(alice, language)
        await label_and_submit(alice, language, ["first idea", "second idea"])
        await onboard(bob, language)
        # bob labels first (new players start as labelers), then gets alice's round to retrieve
        screen = await label_and_submit(bob, language, ["bob idea"])
        grid = grid_of(screen)
        assert "first idea" in grid["caption"] and t("ranking_empty") in grid["caption"]
        task_id = int(player_button(bob, grid, "pd:").split(":")[1])
        target = target_of(world, task_id)
        with Session(world.game.db.engine) as session:
            candidates = session.get(RetrievalTask, task_id).candidate_ids
        position = candidates.index(target) + 1
        other = 1 if position != 1 else 2
        await bob.press(f"pk:{task_id}:{other}", message_id=grid["message_id"])
        await bob.press(f"pk:{task_id}:{position}", message_id=grid["message_id"])
        edited = (await bob.transcript())[-1]
        assert edited.get("edit") and "#1→" in edited["caption"] and "#2→" in edited["caption"]
        await bob.press(f"pu:{task_id}", message_id=grid["message_id"])  # undo: drops the target
        await bob.press(f"pk:{task_id}:{other}", message_id=grid["message_id"])  # un-toggle the other
        await bob.press(f"pk:{task_id}:{position}", message_id=grid["message_id"])
        outcome = await bob.press(f"pd:{task_id}", message_id=grid["message_id"])
        assert outcome[0].get("edit") and outcome[0]["message_id"] == grid["message_id"]
        assert texts(outcome)[0].startswith(t("hit", rank=1, points=3)) and not bob.buttons(outcome[0])
        # alice is in a task: her feedback waits, then heads her next screen
        await alice.replies(settle=0, timeout=0)
        await world.shell.runtime.deliver_outbox_once()
        assert await alice.replies(settle=0.2, timeout=0.5) == []
        live = [e for e in current(await alice.transcript()) if any(
            b.startswith(("lx:", "ps:")) for b in alice.buttons(e))]
        skip = next(b for b in alice.buttons(live[-1]) if b.startswith(("lx:", "ps:")))
        after = await alice.press(skip, message_id=live[-1]["message_id"])
        fresh = [e for e in after if not e.get("edit")]
        # The notice names the sticker by alice's own queries for it.
        feedback_line = t("feedback_hit", query=quoted(["first idea", "second idea"], t.language), rank=1, points=3)
        assert texts(fresh)[0].startswith(feedback_line)
        assert sum(feedback_line in text for text in texts(await alice.transcript())) == 1
        from storage.models import OutboxMessage
        with Session(world.game.db.engine) as session:
            assert {m.status for m in session.exec(select(OutboxMessage).where(
                OutboxMessage.kind == "feedback_hit"))} == {"sent"}


def current(transcript):
    """The bot's messages as they stand now (each one's latest edit)."""
    state = {}
    for entry in transcript:
        if entry.get("by") == "bot" and "message_id" in entry:
            state[entry["message_id"]] = entry
    return [state[k] for k in sorted(state)]


def shaped(t, key):
    """A regular expression for the catalogue's text of `key` with any numbers in its placeholders."""
    text = t(key, **{name: "\x00" for name in ("rank", "total", "tile")})
    return re.compile(re.escape(text).replace("\x00", r"\d+"))


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_the_preview_is_honest_and_the_taboo_shown_up_front(game_db, tmp_path, framework, language):
    t = catalogue(language)
    async with running_bot(game_db, tmp_path, framework) as world:
        player = world.player(1, language)
        screen = await onboard(player, language)
        label = live_text(screen)
        round_id = int(player_button(player, label, "lx:").split(":")[1])
        with Session(world.game.db.engine) as session:
            from storage.models import LabelRound, Query
            sticker_id = session.get(LabelRound, round_id).sticker_id
            seeds = session.exec(select(Query.text).where(Query.sticker_id == sticker_id,
                                                          Query.language == language)).all()
        # taboo up front: what other players gave this sticker is on the screen before any guess
        taken_line = next(line for line in texts([label])[0].splitlines()
                          if line.startswith(t("label_taken", queries="")))
        assert seeds and all(f"“{seed}”" in taken_line for seed in seeds[:8])
        # a taken word with a twist of one's own leads to the sticker: its rank among all the
        # language's stickers, and the tile it is on, outlined in the grid that replaces the photo
        twist = f"{seeds[0]} today" if language == "en" else f"{seeds[0]}今天"
        ranked = await player.send(twist)
        line = next(x for x in texts([live_text(ranked)])[0].splitlines() if f"“{twist}”" in x)
        assert shaped(t, "preview_tile").search(line) or shaped(t, "preview_off_grid").search(line), line
        photo = next(e for e in ranked if "photo" in e)
        assert photo["message_id"] == screen[-1]["message_id"] and f"“{twist}”" in photo.get("caption", "")
        # a purely visual description gets the paper's advice, on the screen, and is not kept
        visual = "yellow circle" if language == "en" else "黄色的圆圈"
        refused = await player.send(visual)
        assert texts([live_text(refused)])[0].endswith(t("screen_warning", query=visual, text=t.error("visual_only")))
        # a miss is never shown as a success: words that lead nowhere say so plainly
        nowhere = "zebra submarine" if language == "en" else "斑马潜水艇"
        missed = await player.send(nowhere)
        line = next(x for x in texts([live_text(missed)])[0].splitlines() if f"“{nowhere}”" in x)
        assert line.endswith(t("preview_not_found"))


def player_button(player, entry, prefix):
    return next(b for b in player.buttons(entry) if b.startswith(prefix))


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_commands(game_db, tmp_path, framework, language):
    t = catalogue(language)
    async with running_bot(game_db, tmp_path, framework) as world:
        player = world.player(3, language)
        await onboard(player, language)
        help_text = texts(await player.send("/help"))[0]
        assert help_text.startswith(t("help", **DEFAULT_RULES))
        assert t("prizes_rules", top=3, tasks=10, period=t("period_week")) in help_text
        me = texts(await player.send("/me"))[0]
        assert t("me_week", count=0, standing=t("me_unranked")) in me and t("me_streak_none") in me and t("me_prizes") in me
        assert texts(await player.send("/top")) == [f"{t('top_empty')}\n\n{t('top_hint')}"]
        # /lang in a task: the task is released (said on its screen), then the chooser
        assert texts(await player.send("/lang")) == [t("task_released"), t("choose_language")]
        assert texts(await player.send("/stop")) == [t("stopped_nothing")]
        await player.press(f"lang:{language}")
        assert texts(await player.send("/stop"))[-1] == t("stopped_released")
        # /forget asks first; Cancel keeps everything, Confirm withdraws
        asked = await player.send("/forget")
        assert texts(asked) == [t("forget_confirm")] and player.buttons(asked[0]) == ["fg:yes", "fg:no"]
        assert texts(await player.press("fg:no")) == [t("forget_cancelled")]
        assert texts(await player.send("/play"))[0].startswith(t("screen_round", round=1))
        await player.send("/forget")
        assert texts(await player.press("fg:yes")) == [t("task_released"), t("forgotten")]
        # without consent there is no play
        assert texts(await player.send("/play")) == [t("consent")]
        commands = world.sandbox.bots[TOKEN].commands
        assert commands == {} or all(commands.values())
        for _ in range(100):  # the lane's drain ends once it finds the lane empty, just after the last reply
            if world.shell.runtime.chat_locks.lanes_in_use() == 0:
                break
            await asyncio.sleep(0.02)
        assert world.shell.runtime.chat_locks.lanes_in_use() == 0  # a chat's lock goes when its last update is done


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_moderator_reviews_a_miss(game_db, tmp_path, framework, language):
    t = catalogue(language)
    async with running_bot(game_db, tmp_path, framework) as world:
        alice, bob = world.player(1, language), world.player(2, language)
        moderator = world.player(MODERATOR, language)
        await onboard(alice, language)
        await label_and_submit(alice, language, ["odd idea", "strange idea"])
        await onboard(bob, language)
        grid = grid_of(await label_and_submit(bob, language, ["bob idea"]))
        task_id = int(player_button(bob, grid, "pd:").split(":")[1])
        with Session(world.game.db.engine) as session:
            candidates = session.get(RetrievalTask, task_id).candidate_ids
        wrong = next(n for n, c in enumerate(candidates, 1) if c != target_of(world, task_id))
        await bob.press(f"pk:{task_id}:{wrong}", message_id=grid["message_id"])
        outcome = await bob.press(f"pd:{task_id}", message_id=grid["message_id"])
        # the grid becomes the sticker that was meant, with the outcome: no new message for it
        assert outcome[0].get("edit") and outcome[0]["message_id"] == grid["message_id"]
        assert texts(outcome)[0].startswith(t("miss")) and not bob.buttons(outcome[0])
        assert texts(await alice.send("/review")) == [t("moderator_only")]
        await onboard(moderator, language)
        review = await moderator.send("/review")
        item = next(e for e in review if "reply_markup" in e and player_button(moderator, e, "ra:"))
        # one screen for the round: both queries, the grid of the sticker and the picks
        assert "odd idea" in texts([item])[0] and "strange idea" in texts([item])[0] and "photo" in item
        await moderator.press(player_button(moderator, item, "rc:"))
        corrected = await moderator.send("odd but fine idea")
        assert t("review_done_corrected_text", query="odd but fine idea") in texts(corrected)[0]
        next_item = next(e for e in corrected if "reply_markup" in e and any(
            b.startswith("ra:") for b in moderator.buttons(e)))
        await moderator.press(player_button(moderator, next_item, "ra:"))
        assert (await moderator.answer_to_last_press())["answer"] == t("review_done_accepted")
        await world.shell.runtime.deliver_outbox_once()
        # alice is in a task: the report waits for a moment between tasks (here /stop) and heads it
        assert await alice.replies(settle=0.2, timeout=0.5) == []
        reported = "\n".join(texts(await alice.send("/stop")))
        assert t("review_decided_corrected", query="odd idea", corrected="odd but fine idea") in reported
        assert t("review_decided_accepted", query="strange idea") in reported
        stats = texts(await moderator.send("/review stats"))[0]
        assert stats.splitlines()[0] == t("review_stats", needs_review=0, validated=0, accepted=0, corrected=0,
                                           discarded=0, contexts_waiting=0).splitlines()[0]


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_robustness(game_db, tmp_path, framework):
    t = catalogue("en")
    async with running_bot(game_db, tmp_path, framework, rate_limits=True) as world:
        alice, bob, mallory = world.player(1), world.player(2), world.player(3)
        # not consented: cannot play
        assert texts(await mallory.send("/play")) == [t("choose_language")]
        for kind in ("photo", "voice", "location", "sticker"):
            assert texts(await mallory.send_kind(kind)) == [catalogue("en")("unsupported")]
        await onboard(alice, "en")
        first = (await alice.transcript())[-1]
        assert texts(await alice.edit(first["message_id"], "edited text")) == [t("edited")]
        await label_and_submit(alice, "en", ["first idea"])
        await onboard(bob, "en")
        grid = grid_of(await label_and_submit(bob, "en", ["bob idea"]))
        task_id = int(player_button(bob, grid, "pd:").split(":")[1])
        # a repeated update is processed once
        before = len(await bob.transcript())
        update = {"update_id": 10_000, "message": {"message_id": 999, "date": 1, "text": "/help",
                  "chat": {"id": 2, "type": "private"}, "from": {"id": 2, "is_bot": False, "first_name": "B"}}}
        for _ in range(2):
            await world.client.post("/sim/redeliver", json={"token": TOKEN, "update": update})
        await world.shell.runtime.wait_finished(10_000)
        await asyncio.sleep(0.2)
        assert len(await bob.transcript()) - before == 1
        bob.seen = len(await bob.transcript())
        # a forged callback: mallory presses bob's button
        await onboard(mallory, "en")
        await mallory.press(f"pd:{task_id}", message_id=(await mallory.transcript())[-1]["message_id"])
        assert (await mallory.answer_to_last_press())["answer"] == t.error("not_your_task")
        # garbage callback data
        await mallory.press("x" * 64, message_id=(await mallory.transcript())[-1]["message_id"])
        assert (await mallory.answer_to_last_press())["answer"] == t("stale")
        # double tap on Done scores once
        target_position = (target_of(world, task_id), )
        with Session(world.game.db.engine) as session:
            position = session.get(RetrievalTask, task_id).candidate_ids.index(target_position[0]) + 1
        await bob.press(f"pk:{task_id}:{position}", message_id=grid["message_id"])
        await bob.press(f"pd:{task_id}", message_id=grid["message_id"])
        await bob.press(f"pd:{task_id}", message_id=grid["message_id"])
        assert (await bob.answer_to_last_press())["answer"] == t.error("task_closed")
        with Session(world.game.db.engine) as session:
            awards = session.exec(select(ScoreEvent).where(ScoreEvent.retrieval_task_id == task_id)).all()
        assert len(awards) == 2
        # pressing an old message's button: stale, polite
        await bob.press(f"pk:{task_id}:1", message_id=grid["message_id"])
        assert (await bob.answer_to_last_press())["answer"] == t.error("task_closed")
        # no chat was sent more than Telegram allows
        stats = (await world.client.get("/sim/stats")).json()["result"]
        assert stats.get("rate_limited", 0) == 0


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_blocked_player_is_marked_inactive_and_429_is_waited_out(game_db, tmp_path, framework):
    t = catalogue("en")
    async with running_bot(game_db, tmp_path, framework) as world:
        alice = world.player(1)
        await onboard(alice, "en")
        await world.client.post("/sim/faults", json={"error_429": 1.0})
        waiting = asyncio.create_task(alice.send("/help", timeout=20))
        await asyncio.sleep(0.3)
        await world.client.post("/sim/faults", json={"error_429": 0.0})
        [answer] = texts(await waiting)
        assert answer.startswith(t("help", **DEFAULT_RULES))
        await world.client.post("/sim/block", json={"token": TOKEN, "user_id": 1})
        # the block is lifted by a new message in the sandbox, so use a press instead
        update = {"update_id": 20_000, "message": {"message_id": 998, "date": 1, "text": "/help",
                  "chat": {"id": 1, "type": "private"}, "from": {"id": 1, "is_bot": False, "first_name": "A"}}}
        await world.client.post("/sim/redeliver", json={"token": TOKEN, "update": update})
        await world.shell.runtime.wait_finished(20_000)
        with Session(world.game.db.engine) as session:
            assert session.exec(select(Player).where(Player.telegram_user_id == 1)).one().active is False


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_webhook_mode_checks_the_secret(game_db, tmp_path, framework):
    t = catalogue("en")
    async with running_bot(game_db, tmp_path, framework, webhook_secret="s3cret-token") as world:
        player = world.player(5)
        [answer] = texts(await player.send("/help"))
        assert answer.startswith(t("help", **DEFAULT_RULES))
        async with httpx.AsyncClient() as client:
            refused = await client.post(world.webhook_url, json={"update_id": 1})
            forged = await client.post(world.webhook_url, json={"update_id": 1},
                                       headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"})
        assert refused.status_code == 401 and forged.status_code == 401


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_suggestion_from_a_retriever(game_db, tmp_path, framework):
    t = catalogue("en")
    async with running_bot(game_db, tmp_path, framework) as world:
        alice, bob = world.player(1), world.player(2)
        await onboard(alice, "en")
        await label_and_submit(alice, "en", ["first idea"])
        await onboard(bob, "en")
        grid = grid_of(await label_and_submit(bob, "en", ["bob idea"]))
        task_id = int(player_button(bob, grid, "pd:").split(":")[1])
        assert texts(await bob.press(f"pg:{task_id}", message_id=grid["message_id"])) == [t("suggest_prompt")]
        assert texts(await bob.send("twelve things")) == [t("suggest_bad", n=9)]
        assert texts(await bob.send("2 brand new words")) == [t("suggest_thanks", query="brand new words")]


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_rounds_under_faults_are_recorded_once(game_db, tmp_path, framework):
    """10% 5xx and 5% 429 on every send: every round is recorded once and the ledger is exactly
    the sum of what the engine decided. CI plays 100 rounds (the suite's budget);
    STICKTIONARY_FAULT_ROUNDS sets more (200 as first measured)."""
    import random

    from offline.oracle import database_oracle
    from offline.sandbox.players import AutoPlayer
    from offline.simulation import demo_vocabulary
    from storage.models import LabelRound, RoundStatus, TaskStatus

    async with running_bot(game_db, tmp_path, framework) as world:
        vocabulary = demo_vocabulary()
        oracle = database_oracle(world.game.db.engine)
        players = [AutoPlayer(world.player(100 + i, "en"), "en", oracle, vocabulary, random.Random(i))
                   for i in range(8)]
        for player in players:
            await player.join()
        await world.client.post("/sim/faults", json={"error_5xx": 0.10, "error_429": 0.05})
        played = {"labeler": 0, "retriever": 0, "idle": 0}
        while played["labeler"] + played["retriever"] < FAULT_ROUNDS:
            for result in await asyncio.gather(*(p.step() for p in players)):
                played[result] += 1
        await world.client.post("/sim/faults", json={"error_5xx": 0, "error_429": 0})
        stats = (await world.client.get("/sim/stats")).json()["result"]
        assert stats.get("fault:5xx", 0) > 0 and stats.get("fault:429", 0) > 0
        with Session(world.game.db.engine) as session:
            tasks = session.exec(select(RetrievalTask).where(RetrievalTask.status == TaskStatus.ANSWERED)).all()
            events = session.exec(select(ScoreEvent)).all()
            finished = session.exec(select(LabelRound).where(col(LabelRound.status).in_(
                (RoundStatus.SUBMITTED, RoundStatus.SKIPPED)), LabelRound.kind == "label")).all()
        points = (3, 2, 1)
        decided = sum(points[t.hit_rank - 1] * (1 if t.is_gold else 2) for t in tasks if t.hit_rank)
        resonance = sum(e.points for e in events if e.reason == "resonance")
        assert sum(e.points for e in events) == decided + resonance
        keys = [e.idempotency_key for e in events]
        assert len(keys) == len(set(keys))
        # every round a player finished is in the database exactly once
        assert len(finished) == played["labeler"] and len(tasks) == played["retriever"]


async def test_one_process_runs_an_english_ptb_bot_and_a_chinese_aiogram_bot(game_db, tmp_path):
    from bots.run import run_bots
    from offline.demo_pack import PACK_DIR
    from offline.sandbox import Sandbox
    from storage.settings import BotConfig, Settings

    sandbox = Sandbox(rate_limits=True)
    sandbox.add_bot("111:en-token", "en_bot")
    sandbox.add_bot("222:zh-token", "zh_bot")
    base = await sandbox.start()
    settings = Settings(storage={"database_url": str(game_db.url), "sticker_root": PACK_DIR},
                        telegram={"media_cache": tmp_path / "cache", "telegram_api": base, "bots": [
                            BotConfig(token="111:en-token", framework="ptb", languages=["en"]),
                            BotConfig(token="222:zh-token", framework="aiogram", languages=["zh"])]},
                        _env_file=None)
    stop = asyncio.Event()
    running = asyncio.create_task(run_bots(settings, stop))
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            for _ in range(100):
                if all(bot.commands for bot in sandbox.bots.values()):
                    break
                await asyncio.sleep(0.05)
            assert [c["command"] for c in sandbox.bots["111:en-token"].commands["en"]][0] == "play"
            assert "zh" in sandbox.bots["222:zh-token"].commands
            en = SandboxPlayer(client, "111:en-token", 1, language_code="en")
            zh = SandboxPlayer(client, "222:zh-token", 2, language_code="zh")
            assert texts(await en.send("/start")) == [catalogue("en")("choose_language")]
            assert texts(await zh.send("/start")) == [catalogue("zh")("choose_language")]
    finally:
        stop.set()
        await running
        await sandbox.stop()



async def test_a_cached_file_id_is_reused_instead_of_uploading_again(game_db, tmp_path):
    from bots.messages.replies import SendSticker
    from core.views import StickerView
    from storage.models import Sticker

    async with running_bot(game_db, tmp_path, "aiogram") as world:
        player = world.player(1)
        await onboard(player, "en")
        with Session(world.game.db.engine) as session:
            row = session.exec(select(Sticker).where(Sticker.format == "gif")).first()
        sticker = StickerView(row.id, row.key, row.file_path, row.format)
        from bots.delivery.replies import deliver_reply
        from bots.messages.replies import Outgoing

        runtime = world.shell.runtime
        for _ in range(2):
            reply = SendSticker(sticker)
            await deliver_reply(runtime.delivery, Outgoing(chat_id=1, replies=[reply]), reply)
        animations = [e["animation"]["file_id"] for e in await player.transcript() if "animation" in e]
        assert len(animations) >= 2 and len(set(animations[-2:])) == 1  # the second one reused the first
        uploads = [k for k in world.sandbox.files if k.startswith("animation-")]
        assert animations[-1] in uploads and len([a for a in animations[-2:] if a in uploads]) == 2


async def test_gold_check_flags_reach_the_moderators(game_db, tmp_path):
    from storage.models import OutboxMessage

    async with running_bot(game_db, tmp_path, "ptb") as world:
        moderator = world.player(MODERATOR)
        await moderator.send("/start")
        with Session(world.game.db.engine) as session:
            session.add(OutboxMessage(dedupe_key="flag:test", kind="moderator_flag",
                                      payload={"pseudonym": "abc123", "gold_hits": 0, "gold_answered": 3}))
            session.commit()
        assert await world.shell.runtime.deliver_outbox_once() == 1
        flagged = await moderator.replies(settle=0.2)
        assert any("abc123" in text and "0/3" in text for text in texts(flagged))
        world.shell.runtime.delivers_to_moderators = False  # another bot in the process: not its job
        with Session(world.game.db.engine) as session:
            session.add(OutboxMessage(dedupe_key="flag:test2", kind="moderator_flag", payload={}))
            session.commit()
        assert await world.shell.runtime.deliver_outbox_once() == 0


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_leaderboard_subscription_and_posts(game_db, tmp_path, framework, language):

    t = catalogue(language)
    async with running_bot(game_db, tmp_path, framework) as world:
        fan = world.player(5, language)
        await onboard(fan, language)
        assert texts(await fan.send("/top")) == [f"{t('top_empty')}\n\n{t('top_hint')}"]
        assert texts(await fan.send("/top on")) == [t("top_subscribed")]
        assert texts(await fan.send("/top")) == [t("top_empty")]  # no hint once subscribed
        with world.game.db.write() as session:
            fan_id = session.exec(select(Player.id).where(Player.telegram_user_id == 5)).one()
            session.add(ScoreEvent(idempotency_key="t", player_id=fan_id, language=language, points=4, reason="x",
                                   created_at=world.game.clock()))
        world.game.prizes.post_leaderboards("week", world.game.clock())
        assert await world.shell.runtime.deliver_outbox_once() == 1
        posted = texts(await fan.replies(settle=0.2))
        nickname = default_nickname(fan_id, language)  # never the Telegram name ("P5")
        assert posted[-1] == "\n".join([t("leaderboard_week"), t("top_row", rank=1, name=nickname, points=4)])
        assert texts(await fan.send("/top off")) == [t("top_unsubscribed")]
        assert world.game.prizes.post_leaderboards("day", world.game.clock())[language] == 0


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_moderator_hands_out_prizes(game_db, tmp_path, framework, language):
    from datetime import timedelta


    t = catalogue(language)
    async with running_bot(game_db, tmp_path, framework) as world:
        winner, moderator = world.player(6, language), world.player(MODERATOR, language)
        await onboard(winner, language)
        await onboard(moderator, language)
        assert texts(await moderator.send("/prizes")) == [t("prizes_empty")]
        now = world.game.clock()
        with Session(world.game.db.engine) as session:
            winner_id = session.exec(select(Player.id).where(Player.telegram_user_id == 6)).one()
            session.add(ScoreEvent(idempotency_key="p", player_id=winner_id, language=language, points=9, reason="x",
                                   created_at=now - timedelta(days=1)))
            session.commit()
        world.game.prizes.tally(now - timedelta(days=7), now, "week")
        assert await world.shell.runtime.deliver_outbox_once() == 2  # the moderators' notice, the winner's
        notice = texts(await moderator.replies(settle=0.2))[-1]
        told = texts(await winner.replies(settle=0.2))[-1]
        assert told == "\n".join([t("prize_won_top", rank=1, points=9, period=t("period_week"),
                                     start=(now - timedelta(days=7)).date().isoformat()), t("prize_claim")])
        lines = "\n".join(t("prizes_tallied_line", language=lang, top=int(lang == language), participation=0)
                          for lang in ("en", "zh"))
        assert notice == t("prizes_tallied", period=t("period_week"), start=(now - timedelta(days=7)).date().isoformat(),
                           end=now.date().isoformat(), lines=lines)
        assert texts(await winner.send("/prizes")) == [t("moderator_only")]
        listing = await moderator.send("/prizes")
        [prize_id] = [int(b.split(":")[1]) for e in listing for b in moderator.buttons(e) if b.startswith("pz:")]
        nickname = default_nickname(winner_id, language)
        assert nickname in texts(listing)[0] and "P6" not in texts(listing)[0] and "9" in texts(listing)[0]
        # the moderator can write to the winner: a text_link on the nickname to their Telegram account
        [link] = listing[0]["entities"]
        assert link["type"] == "text_link" and link["url"] == "tg://user?id=6"
        text = texts(listing)[0].encode("utf-16-le")
        assert text[2 * link["offset"]:2 * (link["offset"] + link["length"])].decode("utf-16-le") == nickname
        # A player forging the moderator's button on a message of their own chat gets nothing.
        await winner.press(f"pz:{prize_id}", message_id=(await winner.transcript())[-1]["message_id"])
        assert (await winner.answer_to_last_press())["answer"] == t("moderator_only")
        await moderator.press(f"pz:{prize_id}")
        assert (await moderator.answer_to_last_press())["answer"] == t("prize_marked", id=prize_id)
        edited = (await moderator.transcript())[-1]
        assert texts([edited]) == [t("prizes_empty")]
        await moderator.press(f"pz:{prize_id}", message_id=listing[0]["message_id"])  # a double tap
        assert (await moderator.answer_to_last_press())["answer"] == t.error("prize_delivered")


async def test_leaderboard_posts_to_many_players_stay_within_telegrams_limits(game_db, tmp_path):

    async with running_bot(game_db, tmp_path, "aiogram", rate_limits=True) as world:
        fans = [world.player(3000 + i) for i in range(40)]
        await asyncio.gather(*(fan.send("/start") for fan in fans))
        with Session(world.game.db.engine) as session:
            ids = session.exec(select(Player.id).where(col(Player.telegram_user_id) >= 3000)).all()
        for player_id in ids:
            world.game.players.set_language(player_id, "en")
            world.game.players.give_consent(player_id)
            world.game.players.set_leaderboard_opt_in(player_id, True)
        assert world.game.prizes.post_leaderboards("day", world.game.clock())["en"] == 40
        started = asyncio.get_running_loop().time()
        delivered = 0
        while delivered < 40:
            delivered += await world.shell.runtime.deliver_outbox_once()
        elapsed = asyncio.get_running_loop().time() - started
        stats = (await world.client.get("/sim/stats")).json()["result"]
        assert stats.get("rate_limited", 0) == 0  # the sandbox answers 429 past 30 messages a second
        assert elapsed >= 0.55  # the overall pacing lets a burst of 25 go, then 25 a second: 15 more take 0.6 s
        for fan in fans:
            assert texts(await fan.transcript())[-1].startswith(catalogue("en")("leaderboard_day"))


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_a_post_telegram_refuses_does_not_block_the_outbox(game_db, tmp_path, framework):
    from storage.models import OutboxMessage

    async with running_bot(game_db, tmp_path, framework) as world:
        fan = world.player(7)
        await onboard(fan, "en")
        with Session(world.game.db.engine) as session:
            fan_id = session.exec(select(Player.id).where(Player.telegram_user_id == 7)).one()
            payload = {"language": "en", "period": "day", "since": "", "rows": [[1, "P7", 3]]}
            session.add(OutboxMessage(dedupe_key="to-a-group-the-bot-is-not-in", kind="leaderboard", chat_id=-100999,
                                      payload=payload))
            session.add(OutboxMessage(dedupe_key="to-the-fan", kind="leaderboard", player_id=fan_id, payload=payload))
            session.commit()
        assert await world.shell.runtime.deliver_outbox_once() == 1
        stats = (await world.client.get("/sim/stats")).json()["result"]
        assert stats.get("error:400") == 1  # "chat not found": refused, dead-lettered, not retried
        assert texts(await fan.replies(settle=0.2))[-1].startswith(catalogue("en")("leaderboard_day"))
        assert await world.shell.runtime.deliver_outbox_once() == 0  # nothing left to retry forever
        with Session(world.game.db.engine) as session:
            refused = session.exec(select(OutboxMessage).where(OutboxMessage.chat_id == -100999)).one()
        assert refused.status == "dead" and refused.sent_at is None and "chat not found" in refused.last_error.lower()


async def test_aiogram_reply_models_are_built_once():
    """aiogram parametrises `Response[...]` inside a function for every call; pydantic caches it only
    weakly, so unless the shell holds it, a garbage collection makes the next call rebuild it."""
    import gc
    import weakref

    from aiogram.methods.base import Response
    from aiogram.types import Message

    import bots.transport.aiogram_shell  # noqa: F401 - importing the shell is what holds the models

    def parse_model():  # as aiogram does: from a function, keeping no reference
        return weakref.ref(Response[Message])

    model = parse_model()
    gc.collect()
    assert model() is not None


async def test_wait_finished_knows_recent_updates_and_forgets_old_ones():
    from bots.intake import REMEMBERED_UPDATES, FinishedUpdates

    finished = FinishedUpdates()
    finished.mark(1)
    await finished.wait(1, timeout=0.1)  # finished before anyone asked
    with pytest.raises(TimeoutError):
        await finished.wait(2, timeout=0.05)
    assert finished.waiters() == 0  # a waiter that gave up leaves nothing behind
    both = [asyncio.create_task(finished.wait(3, timeout)) for timeout in (0.05, 5)]
    await asyncio.sleep(0.1)
    finished.mark(3)
    results = await asyncio.gather(*both, return_exceptions=True)
    assert isinstance(results[0], TimeoutError) and results[1] is None
    for update_id in range(100, 100 + REMEMBERED_UPDATES + 10):
        finished.mark(update_id)
    assert len(finished) == REMEMBERED_UPDATES and 1 not in finished


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_a_graceful_stop_finishes_the_updates_in_flight(game_db, tmp_path, framework):
    """SIGTERM with an update in flight: the update is handled and its replies delivered before the
    bot goes (once, the aiogram shell stored the query and never sent the reply)."""
    from storage.models import InboxStatus, InboxUpdate

    t = catalogue("en")
    async with running_bot(game_db, tmp_path, framework) as world:
        player = world.player(8)
        await onboard(player, "en")
        sent = await world.client.post("/sim/message", json={"token": TOKEN, "user_id": 8, "text": "/help"})
        update_id = sent.json()["result"]["update_id"]
        for _ in range(500):  # until the poller has stored it: from then on it is in flight
            with Session(game_db) as session:
                if session.get(InboxUpdate, ("123456", update_id)) is not None:
                    break
            await asyncio.sleep(0.01)
        await world.shell.stop()
        with Session(game_db) as session:
            assert session.get(InboxUpdate, ("123456", update_id)).status == InboxStatus.DONE
        assert texts(await player.replies(settle=0, timeout=0))[-1].startswith(t("help", **DEFAULT_RULES))
