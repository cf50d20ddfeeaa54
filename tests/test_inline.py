"""Inline sticker search through the sandbox, on both shells: stickers uploaded to a storage chat for
their file ids, `@bot so tired` answered with ranked cached stickers, pages, the empty query, hostile
text, and chosen results kept for consenting players only."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session, func, select

from bots.delivery.uploads import StickerUploads
from core.datasets import import_sticker_queries
from core.game.inline_search import PAGE, inline_text, page_start, parse_result_id
from storage.models import InboxUpdate, InlineChoice, Player, Sticker, TelegramFile
from tests.bots_world import TOKEN, running_bot
from tests.test_bots import onboard

FRAMEWORKS = ["ptb", "aiogram"]
STORAGE_CHAT = -1_001_234


async def uploaded(world, languages=("en",)) -> StickerUploads:
    """Every searchable sticker of the languages sent to the storage chat, as the bots' upload job does."""
    await world.client.post("/sim/group", json={"token": TOKEN, "chat_id": STORAGE_CHAT, "title": "storage"})
    uploads = StickerUploads(world.shell.runtime.delivery, STORAGE_CHAT, languages)
    before = await world.shell.runtime.delivery.game(uploads.counts)
    assert before.missing == before.stickers > 0
    while await uploads.upload_batch(limit=25):
        pass
    after = await world.shell.runtime.delivery.game(uploads.counts)
    assert after.missing == 0 and after.stickers == before.stickers and after.gifs > 0
    return uploads


async def inline(world, user_id: int, query: str, offset: str = "", language_code: str = "en") -> dict:
    response = await world.client.post("/sim/inline", json={"token": TOKEN, "user_id": user_id, "query": query,
                                                            "offset": offset, "language_code": language_code})
    assert response.status_code == 200, response.text
    return response.json()["result"]


async def choose(world, user_id: int, result_id: str, query: str) -> None:
    response = await world.client.post("/sim/choose", json={"token": TOKEN, "user_id": user_id,
                                                            "result_id": result_id, "query": query})
    assert response.status_code == 200, response.text
    await world.shell.runtime.wait_finished(response.json()["result"]["update_id"])


def sticker_ids(answer: dict) -> list[int]:
    return [parse_result_id(r["id"])[0] for r in answer["results"]]


def file_ids(db, bot_key: str) -> dict[int, str]:
    with Session(db) as session:
        return dict(session.exec(select(TelegramFile.sticker_id, TelegramFile.file_id).where(
            TelegramFile.bot_key == bot_key, TelegramFile.kind == "sticker")).all())


@pytest.mark.asyncio
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_inline_query_answers_ranked_cached_stickers(game_db, tmp_path, framework):
    async with running_bot(game_db, tmp_path, framework) as world:
        # Before any upload, no sticker has a file id: nothing can be offered, and nothing breaks.
        empty = await inline(world, 50, "so tired")
        assert empty["results"] == [] and empty["next_offset"] == ""
        await uploaded(world)
        bot_key = world.shell.runtime.bot_key
        ids = file_ids(game_db, bot_key)
        answer = await inline(world, 50, "so tired")
        # The preview's ranking (BM25 over usable queries, content words), as cached stickers of this bot.
        preview = world.game.previews.preview("en", "so tired").hits
        expected = [hit.sticker_id for hit in preview if hit.sticker_id in ids]  # GIFs are never stickers
        assert answer["results"] and sticker_ids(answer)[:len(expected)] == expected[:len(sticker_ids(answer))]
        with Session(game_db) as session:
            best = session.get(Sticker, sticker_ids(answer)[0])
        assert best.key == "7100000000000000005.png"  # "sleepy, so tired, good night"
        assert all(r["type"] == "sticker" and r["sticker_file_id"] == ids[parse_result_id(r["id"])[0]]
                   for r in answer["results"])
        assert [parse_result_id(r["id"])[1] for r in answer["results"]] == list(range(1, len(answer["results"]) + 1))
        # This bot serves two languages and answers in the asker's: the answer is theirs only.
        assert answer["is_personal"] is True and answer["cache_time"] == world.game.settings.telegram.inline_cache_seconds
        # This bot serves both languages: a Chinese client searches the Chinese queries.
        chinese = await inline(world, 53, "困了想睡觉", language_code="zh")
        assert sticker_ids(chinese)[0] == sticker_ids(answer)[0]  # the same sleepy sticker, from 困了, 睡觉
        assert not (await inline(world, 53, "so tired", language_code="zh"))["results"]  # no English in zh
        # Nothing is kept about someone who only searched: no player, and the inbox forgets the query.
        with Session(game_db) as session:
            assert session.exec(select(Player).where(Player.telegram_user_id == 50)).first() is None
            stored = session.get(InboxUpdate, (bot_key, answer["update_id"]))
            assert stored.payload == {"update_id": answer["update_id"]}


def more_stickers(db, tmp_path, n: int) -> None:
    """`n` more English stickers (copies of a pack sticker's file) with seed queries, for several pages."""
    with Session(db) as session:
        pack = session.exec(select(Sticker).where(Sticker.format == "png").order_by(Sticker.id)).first()
        session.add_all(Sticker(key=f"extra-{i}.png", file_path=pack.file_path, format="png") for i in range(n))
        session.commit()
    seeds = tmp_path / "extra.csv"
    seeds.write_text("sticker_id,labeled_queries\n" + "".join(f'extra-{i}.png,"so tired {i}, nap"\n'
                                                                for i in range(n)), encoding="utf-8")
    import_sticker_queries(db, seeds, "en")


@pytest.mark.asyncio
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_empty_query_shows_most_used_and_pages(game_db, tmp_path, framework):
    more_stickers(game_db, tmp_path, 60)
    async with running_bot(game_db, tmp_path, framework) as world:
        await uploaded(world)
        tired = await inline(world, 51, "so tired")
        assert len(tired["results"]) == PAGE and tired["next_offset"] == str(PAGE)
        rest = await inline(world, 51, "so tired", tired["next_offset"])
        assert rest["results"] and rest["next_offset"] == ""
        assert not set(sticker_ids(tired)) & set(sticker_ids(rest))
        first = await inline(world, 51, "")
        assert len(first["results"]) == PAGE and first["next_offset"] == str(PAGE)
        second = await inline(world, 51, "", first["next_offset"])
        third = await inline(world, 51, "", second["next_offset"])
        assert third["results"] and third["next_offset"] == ""
        shown = sticker_ids(first) + sticker_ids(second) + sticker_ids(third)
        assert len(shown) == len(set(shown)) == len(file_ids(game_db, world.shell.runtime.bot_key))
        assert [parse_result_id(r["id"])[1] for r in second["results"]][0] == PAGE + 1
        # A forged offset is the first page, not an error.
        assert sticker_ids(await inline(world, 51, "", "9999999999")) == sticker_ids(first)


@pytest.mark.asyncio
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_choices_are_kept_for_consenting_players_only(game_db, tmp_path, framework):
    async with running_bot(game_db, tmp_path, framework) as world:
        await uploaded(world)
        player = world.player(60, "en")
        await onboard(player, "en")
        answer = await inline(world, 60, "so hot")
        chosen = answer["results"][1]
        await choose(world, 60, chosen["id"], "so hot")
        # Someone who never started the bot: served, but neither they nor their choice are kept.
        stranger = await inline(world, 61, "so hot")
        await choose(world, 61, stranger["results"][0]["id"], "so hot")
        # A player who has not consented (started, chose a language, stopped there) likewise.
        undecided = world.player(62, "en")
        await undecided.send("/start")
        await undecided.press("lang:en")
        await choose(world, 62, (await inline(world, 62, "so hot"))["results"][0]["id"], "so hot")
        with Session(game_db) as session:
            rows = session.exec(select(InlineChoice)).all()
            players = {p.telegram_user_id: p.id for p in session.exec(select(Player)).all()}
        assert 61 not in players
        assert len(rows) == 1
        row = rows[0]
        assert row.player_id == players[60] and row.query == "so hot" and row.language == "en"
        assert (row.sticker_id, row.rank) == parse_result_id(chosen["id"])
        assert row.shown == sticker_ids(answer)
        assert row.hour.minute == row.hour.second == row.hour.microsecond == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_hostile_inline_text(game_db, tmp_path, framework):
    async with running_bot(game_db, tmp_path, framework) as world:
        await uploaded(world)
        plain = sticker_ids(await inline(world, 70, "so tired"))
        # Invisible characters, full-width letters, control characters, bidi overrides: the same search.
        for hostile in ("so\u200b tired", "ｓｏ ｔｉｒｅｄ", "so\x00\x07 tired\n", "\u202eso tired\u202c", "  so   tired  "):
            assert sticker_ids(await inline(world, 70, hostile)) == plain, repr(hostile)
        # Over-long text, markup, and nothing but punctuation or emoji: an answer each, no failure.
        for odd in ("so tired " * 500, "<b>so</b> tired'; DROP TABLE sticker; --", "!!!???", "😴" * 300, "/start"):
            answer = await inline(world, 70, odd)
            assert len(answer["results"]) <= PAGE
        # A raw update with a lone surrogate or a non-string query, as a broken client might send.
        for n, query in enumerate(("so tired \ud83d", 12345, None)):
            update = {"update_id": 10_000 + n, "inline_query": {
                "id": "999", "from": {"id": 70, "is_bot": False, "first_name": "X"}, "query": query, "offset": ""}}
            await world.client.post("/sim/redeliver", content=json.dumps({"token": TOKEN, "update": update}),
                                    headers={"Content-Type": "application/json"})
            await world.shell.runtime.wait_finished(update["update_id"])
        # A forged chosen result (not ours, or a sticker that does not exist) is ignored.
        player = world.player(71, "en")
        await onboard(player, "en")
        await inline(world, 71, "so tired")
        for forged in ("../../etc", "99999999.1", "1.0", "1.99999"):
            update = {"update_id": 20_000 + len(forged), "chosen_inline_result": {
                "result_id": forged, "from": {"id": 71, "is_bot": False, "first_name": "X"}, "query": "so tired"}}
            await world.client.post("/sim/redeliver", json={"token": TOKEN, "update": update})
            await world.shell.runtime.wait_finished(update["update_id"])
        with Session(game_db) as session:
            assert session.exec(select(func.count()).select_from(InlineChoice)).one() == 0
            assert session.exec(select(func.count()).select_from(InboxUpdate).where(
                InboxUpdate.status == "failed")).one() == 0


def test_inline_text_and_offsets():
    assert inline_text("ｓｏ\u200b  ＴＩＲＥＤ\x00") == "so TIRED"
    assert inline_text(None) == "" and inline_text(42) == ""
    assert len(inline_text("x" * 10_000)) == 256
    assert page_start("50") == 50 and page_start("") == 0 and page_start("-50") == 0 and page_start("51") == 0
    assert page_start("٥٠") == 0 and page_start("1" * 50) == 0
    assert parse_result_id("12.3") == (12, 3) and parse_result_id("12.0") is None and parse_result_id("a.1") is None


def test_choices_export_as_the_inline_config(db, settings, tmp_path):
    """Engine to `datasets`: choices of consenting players, withdrawn ones left out, pseudonymous."""
    import os

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    datasets = pytest.importorskip("datasets", reason="datasets is in the test extra")
    from core.export_inline import INLINE_SCHEMA
    from core.exports import annotator_id, run_export
    from tests.helpers import make_player, make_world

    game = make_world(db, settings, stickers=12)
    with Session(db) as session:
        stickers = {s.id: s.key for s in session.exec(select(Sticker)).all()}
        session.add_all(TelegramFile(bot_key="b", sticker_id=i, kind="sticker", file_id=f"f{i}") for i in stickers)
        session.commit()
    answer = game.inline.answer("b", "en", "mood")
    assert len(answer.results) == len(stickers) and answer.next_offset == ""
    staying, leaving = make_player(game, 1), make_player(game, 2)
    unconsented = make_player(game, 3, consent=False)
    assert game.inline.choose("b", 1, answer.results[2].result_id, "mood", "en")
    assert game.inline.choose("b", 2, answer.results[0].result_id, "mood", "en")
    assert not game.inline.choose("b", 3, answer.results[0].result_id, "mood", "en")
    assert not game.inline.choose("b", 4, answer.results[0].result_id, "mood", "en")  # never started the bot
    game.players.withdraw_consent(leaving)
    assert unconsented and game.players.find(4) is None
    # The empty query now shows the chosen stickers first.
    assert game.inline.popular_seconds and game.inline.answer("b", "en", "").results
    summary = run_export(db, settings)
    folder = summary.folder
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "config_name: inline" in card and "/setinlinefeedback" in card and "1/1" in card
    loaded = datasets.load_dataset(str(folder), "inline", split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded.num_rows == 1
    row = loaded[0]
    assert row["chooser"] == annotator_id(settings.privacy.pseudonym_key, staying)
    assert row["sticker_id"] == stickers[answer.results[2].sticker_id] and row["rank"] == 3 and row["query"] == "mood"
    assert row["shown"] == [stickers[r.sticker_id] for r in answer.results]
    assert row["hour"].minute == 0
    assert loaded.column_names == INLINE_SCHEMA.names  # no Telegram id, name or player id
    assert loaded.features["hour"].dtype.startswith("timestamp[us")


def test_doctor_says_how_many_stickers_inline_search_leaves_out(db, settings):
    from sticktionary.doctor import Examination, Status
    from storage.settings import BotConfig
    from tests.helpers import make_world

    make_world(db, settings, stickers=5)
    with Session(db) as session:
        first = session.exec(select(Sticker.id).order_by(Sticker.id)).first()
        session.add(TelegramFile(bot_key="b", sticker_id=first, kind="sticker", file_id="f"))
        session.commit()
    bots = [BotConfig(token="1:x", languages=["en"], name="b")]
    for file_chat, status, words in ((None, Status.WARN, "STICKTIONARY_FILE_CHAT"), (-100, Status.OK, "-100")):
        examination = Examination(settings.replace(telegram={"bots": bots, "file_chat": file_chat}))
        examination.engine = db
        examination.check_inline()
        (finding,) = examination.findings
        assert finding.check == "inline b" and finding.status == status
        assert finding.detail.startswith("4 of 5 searchable stickers are left out of inline results")
        assert words in finding.detail + (finding.fix or "")


@pytest.mark.asyncio
async def test_uploads_resume_where_they_stopped_and_stop_when_not_allowed(game_db, tmp_path):
    async with running_bot(game_db, tmp_path, "aiogram") as world:
        await world.client.post("/sim/group", json={"token": TOKEN, "chat_id": STORAGE_CHAT, "title": "storage"})
        delivery = world.shell.runtime.delivery
        first = StickerUploads(delivery, STORAGE_CHAT, ("en",))
        total = (await delivery.game(first.counts)).missing
        assert await first.upload_batch(limit=7) == 7
        # A restart: a new uploader goes on with the stickers that have no id, never one twice.
        again = StickerUploads(delivery, STORAGE_CHAT, ("en",))
        assert (await delivery.game(again.counts)).missing == total - 7
        assert await again.upload_batch(limit=5) == 5
        sent = world.sandbox.stats["ok:sendSticker"]
        assert sent == 12 and len(file_ids(game_db, world.shell.runtime.bot_key)) == 12
        # Removed from the storage chat: uploading stops with the reason, nothing is recorded.
        await world.client.post("/sim/block", json={"token": TOKEN, "user_id": STORAGE_CHAT})
        assert await again.upload_batch(limit=5) == 0
        assert again.stopped and "Forbidden" in again.stopped
        assert await again.upload_batch(limit=5) == 0 and world.sandbox.stats["ok:sendSticker"] == sent
        # No storage chat configured: nothing is tried.
        assert await StickerUploads(delivery, None, ("en",)).upload_batch() == 0
        # A sticker whose path leads out of the sticker folder is skipped (and said), the others go on.
        await world.client.post("/sim/block", json={"token": TOKEN, "user_id": STORAGE_CHAT, "blocked": False})
        waiting = await delivery.game(again.waiting, 1)
        with Session(game_db) as session:
            broken = session.get(Sticker, waiting[0].id)
            broken.file_path = "../../../etc/passwd"
            session.add(broken)
            session.commit()
        fresh = StickerUploads(delivery, STORAGE_CHAT, ("en",))
        assert await fresh.upload_batch(limit=3) == 2 and fresh.refused == {waiting[0].id}
