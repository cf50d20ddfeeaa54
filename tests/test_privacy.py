"""Privacy in the game: leaderboards and the prize list show a nickname (generated, or chosen with
/name), never the Telegram name, and never list players who withdrew their consent or were banned.
The conversation tests run on both shells and in both languages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from bots.messages.catalogue import catalogue
from core.nicknames import MAX_CHARS, NicknameError, clean_nickname, default_nickname
from storage.db import session_scope
from storage.models import OutboxMessage, Player, ScoreEvent
from tests.bots_world import MODERATOR, running_bot
from tests.test_bots import onboard, texts

FRAMEWORKS = ["ptb", "aiogram"]
LANGUAGES = ["en", "zh"]


# ---------------------------------------------------------------- nicknames, without a bot
def test_default_nicknames_are_fixed_per_player_and_speak_the_language():
    assert default_nickname(7, "en") == default_nickname(7, "en")
    names = {default_nickname(i, "en") for i in range(1, 2001)}
    assert len(names) == 2000  # the id keeps them apart
    assert len({name.rsplit(" ", 1)[0] for name in names}) > 100  # and the words vary
    assert all(not any("\u4e00" <= ch <= "\u9fff" for ch in default_nickname(i, "en")) for i in range(50))
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in default_nickname(i, "zh")) for i in range(50))
    assert default_nickname(3, None) == default_nickname(3, "en")


@pytest.mark.parametrize("text, code", [
    ("", "nickname_empty"), ("   ", "nickname_empty"), ("x", "nickname_length"), ("a" * (MAX_CHARS + 1), "nickname_length"),
    ("!!!", "nickname_symbols"), ("😀😀😀", "nickname_symbols"), ("line\nbreak", "nickname_symbols"),
    ("www.example.com", "nickname_refused"), ("@someone", "nickname_refused"), ("F.u.c.k", "nickname_refused"),
    ("傻逼", "nickname_refused"), (None, "nickname_symbols"),
])
def test_a_chosen_nickname_is_refused_when_it_cannot_be_one(text, code):
    with pytest.raises(NicknameError) as refused:
        clean_nickname(text)
    assert refused.value.code == code


def test_a_chosen_nickname_is_normalised():
    assert clean_nickname("  Ｓｕｎｎｙ   Fox ") == ("Sunny Fox", "sunny fox")
    assert clean_nickname("小明同学") == ("小明同学", "小明同学")


# ---------------------------------------------------------------- through the bots
@pytest.mark.asyncio
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_player_has_a_nickname_and_can_choose_another(game_db, tmp_path, framework, language):
    t = catalogue(language)
    chosen = "Sunny Fox" if language == "en" else "阳光狐狸"
    async with running_bot(game_db, tmp_path, framework) as world:
        alice = world.player(1, language, name="Alice Realname")
        await onboard(alice, language)
        alice_id = world.game.players.find(1).id
        default = default_nickname(alice_id, language)
        assert texts(await alice.send("/name")) == [t("name_current", nickname=default)]
        assert t("me_title", nickname=default) in texts(await alice.send("/me"))[0]
        assert texts(await alice.send("/name !!!")) == [t.error("nickname_symbols")]
        assert texts(await alice.send("/name x")) == [t.error("nickname_length", "2–20")]
        assert texts(await alice.send("/name " + "y" * 40)) == [t.error("nickname_length", "2–20")]
        assert texts(await alice.send("/name t.me/spam")) == [t.error("nickname_refused")]
        assert texts(await alice.send(f"/name {chosen}")) == [t("name_set", nickname=chosen)]
        me = texts(await alice.send("/me"))[0]
        assert t("me_title", nickname=chosen) in me and "Alice Realname" not in me
        # unique among the chosen nicknames of a language, whatever the case and spacing
        bob = world.player(2, language)
        await onboard(bob, language)
        typed = chosen.upper() if language == "en" else chosen
        assert texts(await bob.send(f"/name  {typed} ")) == [t.error("nickname_taken", typed)]


@pytest.mark.asyncio
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_top_and_prizes_show_nicknames_and_never_forgotten_or_banned_players(game_db, tmp_path, framework,
                                                                                   language):
    t = catalogue(language)
    async with running_bot(game_db, tmp_path, framework) as world:
        players = {uid: world.player(uid, language, name=f"Secretname{uid}") for uid in (11, 12, 13)}
        for player in players.values():
            consent = await player.send("/start")
            await player.press(f"lang:{language}")
            screen = await player.press("consent")
            assert consent and screen
        assert "/name" in t("consent")  # the consent says what others see
        ids = {uid: world.game.players.find(uid).id for uid in players}
        now = world.game.clock()
        with world.game.db.write() as session:
            for points, uid in enumerate(players, start=3):
                session.add(ScoreEvent(idempotency_key=f"p{uid}", player_id=ids[uid], language=language,
                                       points=points, reason="x", created_at=now - timedelta(hours=1)))
        await players[11].send("/name Nova")
        top = texts(await players[11].send("/top"))[0]
        assert "Secretname" not in top
        for name in ("Nova", default_nickname(ids[12], language), default_nickname(ids[13], language)):
            assert name in top
        # Carol withdraws her consent, Bob is banned: neither is listed anywhere any more.
        world.game.players.withdraw_consent(ids[13])
        with world.game.db.write() as session:
            session.execute(update(Player).where(Player.id == ids[12]).values(banned=True))
        top = texts(await players[11].send("/top"))[0]
        assert top.split("\n\n")[0].splitlines()[1:] == [t("top_row", rank=1, name="Nova", points=3)]
        await players[11].send("/top on")
        world.game.prizes.post_leaderboards("week", now)
        with Session(world.game.db.engine) as session:
            posts = session.exec(select(OutboxMessage).where(OutboxMessage.kind == "leaderboard")).all()
        assert posts and all(post.payload["rows"] == [[1, "Nova", 3]] for post in posts)
        world.game.prizes.tally(now - timedelta(days=7), now + timedelta(minutes=1), "week")
        moderator = world.player(MODERATOR, language)
        listing = await moderator.send("/prizes")
        text = texts(listing)[0]
        assert "Nova" in text and "Secretname" not in text
        assert default_nickname(ids[12], language) not in text and default_nickname(ids[13], language) not in text
        assert [e["url"] for e in listing[0]["entities"]] == ["tg://user?id=11"]
        # the winner is told what they won and how to claim it
        await world.shell.runtime.deliver_outbox_once()
        told = "\n".join(texts(await players[11].replies(settle=0.2)))
        assert t("prize_claim") in told


# ---------------------------------------------------------------- the engine, on SQLite and PostgreSQL
def test_leaderboards_list_nicknames_of_players_in_good_standing(db, settings):
    from core.game import GameError
    from tests.helpers import make_player, make_world

    game = make_world(db, settings, stickers=3, languages=("en", "zh"))
    alice, bob, carol = (make_player(game, i) for i in (1, 2, 3))
    wen, li = make_player(game, 4, "zh"), make_player(game, 5, "zh")
    now = game.clock()
    with session_scope(db) as session:
        for player_id, points in ((alice, 5), (bob, 7), (carol, 2), (wen, 4)):
            session.add(ScoreEvent(idempotency_key=f"s{player_id}", player_id=player_id,
                                   language="zh" if player_id == wen else "en", points=points, reason="x",
                                   created_at=now - timedelta(hours=3)))
    assert game.players.set_nickname(alice, " Nova ") == "Nova"
    with pytest.raises(GameError) as taken:
        game.players.set_nickname(carol, "NOVA")
    assert taken.value.code == "nickname_taken"
    assert game.players.set_nickname(wen, "nova") == "nova"  # another language: free
    with pytest.raises(GameError) as refused:
        game.players.set_nickname(li, "?!")
    assert refused.value.code == "nickname_symbols"
    board = game.standings.leaderboard("en")
    assert [(row.nickname, row.points) for row in board] == [(default_nickname(bob, "en"), 7), ("Nova", 5),
                                                              (default_nickname(carol, "en"), 2)]
    assert all("player" not in row.nickname for row in board)  # "player2" is bob's Telegram name
    game.players.withdraw_consent(bob)
    with session_scope(db) as session:
        session.execute(update(Player).where(Player.id == carol).values(banned=True))
    assert [row.nickname for row in game.standings.leaderboard("en")] == ["Nova"]
    stats = game.standings.player_stats(alice)
    assert (stats.period_points, stats.period_rank, stats.points) == (5, 1, 5)
    # the prizes of the current period, and how close alice is
    standing = game.prizes.standing(alice)
    assert standing.top_n == settings.rules.prize_top_n and standing.session_min_tasks == settings.rules.session_min_tasks


@pytest.mark.asyncio
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_me_shows_the_period_the_streak_and_the_prizes(game_db, tmp_path, framework, language):
    t = catalogue(language)
    async with running_bot(game_db, tmp_path, framework) as world:
        leader, alice = world.player(21, language), world.player(22, language)
        await onboard(leader, language)
        await onboard(alice, language)
        ids = {uid: world.game.players.find(uid).id for uid in (21, 22)}
        now = world.game.clock()
        with world.game.db.write() as session:
            for uid, points, age in ((21, 9, 1), (22, 4, 1), (22, 6, 30 * 24)):  # alice's 6 are a month old
                session.add(ScoreEvent(idempotency_key=f"m{uid}{age}", player_id=ids[uid], language=language,
                                       points=points, reason="x", created_at=now - timedelta(hours=age)))
        me = texts(await alice.send("/me"))[0]
        assert t("me_week", count=4, standing=t("me_rank", rank=2)) in me and t("me_all_time", count=10) in me
        assert t("me_streak_none") in me and t("me_prizes") in me
        standing = world.game.prizes.standing(ids[22])
        period, end = t(f"period_{standing.period}"), standing.period_end.date().isoformat()
        if standing.rank is not None and standing.rank <= standing.top_n:  # alice is within the top 3 already
            assert t("me_prize_top_in", top=3, period=period, end=end, rank=standing.rank) in me
        else:
            assert t("me_prize_top_need", top=3, period=period, end=end, count=standing.points_to_top) in me
        assert t("me_prize_session_need", count=10, period=period, best=standing.session_tasks) in me


# ---------------------------------------------------------------- the pseudonym key of exports
SHORT, REPEATED, FEW = "x", "ab" * 24, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"
WORDS = "correct-horse-battery-staple-monkey-dragon-sunshine-2026"
PLACEHOLDERS = ["change-me", "CHANGE-ME", " change-me", "change-me ", "Change Me", "change_me",
                "change-me-0123456789abcdefghijklmnopqrstuvwxyz"]


@pytest.mark.parametrize("key", ["", SHORT, "a-test-secret", REPEATED, FEW, WORDS, "0123456789abcdef" * 4,
                                 "supercalifragilisticexpialidocious" * 2, *PLACEHOLDERS])
def test_a_guessable_pseudonym_key_is_refused_with_one_line_on_how_to_make_one(key, settings):
    from core.exports import ExportRefused, check_export_settings
    from core.pseudonyms import key_problem

    problem = key_problem(key)
    assert problem is not None and "\n" not in problem
    assert "STICKTIONARY_PSEUDONYM_KEY" in problem and "secrets.token_urlsafe(48)" in problem
    with pytest.raises(ExportRefused) as refused:
        check_export_settings(settings.replace(privacy={"pseudonym_key": key}))
    assert str(refused.value) == problem


def test_keys_made_as_the_refusal_says_are_accepted():
    import secrets

    from core.pseudonyms import key_problem

    keys = [secrets.token_urlsafe(48) for _ in range(2000)] + [secrets.token_hex(32) for _ in range(2000)]
    assert [key for key in keys if key_problem(key)] == []


def test_a_work_folder_keeps_one_random_key_readable_by_its_owner_only(tmp_path):
    import stat

    from core.pseudonyms import KEY_FILE, key_problem, work_folder_key

    key = work_folder_key(tmp_path / "demo")
    assert key_problem(key) is None
    assert stat.S_IMODE((tmp_path / "demo" / KEY_FILE).stat().st_mode) == 0o600
    assert work_folder_key(tmp_path / "demo") == key  # kept: ids stay stable from run to run
    assert work_folder_key(tmp_path / "play") != key  # another folder, another secret
    assert [p.name for p in (tmp_path / "demo").iterdir()] == [KEY_FILE]  # no draft left behind
    (tmp_path / "demo" / KEY_FILE).write_text("demo\n")
    with pytest.raises(ValueError, match="delete the file"):
        work_folder_key(tmp_path / "demo")


def test_annotator_ids_map_back_to_players_with_the_key_and_not_without(db, settings, tmp_path):
    """The attack the key stops: hash every plausible player id and look the export's ids up."""
    import json

    from core.exports import annotator_id, run_export
    from core.pseudonyms import work_folder_key
    from tests.helpers import make_player, make_world
    from tests.test_exports import _round_for_retrieval

    game = make_world(db, settings, stickers=8, languages=("en",))
    players = [make_player(game, i, "en") for i in range(1, 5)]
    for labeler, retriever in zip(players, players[1:] + players[:1], strict=True):
        _round_for_retrieval(game, labeler, retriever, [f"query of {labeler}", f"another of {labeler}"], hit=True)
    key = work_folder_key(tmp_path / "work")
    summary = run_export(db, settings.replace(privacy={"pseudonym_key": key}))
    lines = (summary.folder / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    exported = {row["annotator"]: row["text"] for row in map(json.loads, lines) if row["annotator"]}
    assert len(exported) == len(players)

    def map_back(guess: str) -> dict[str, int]:
        table = {annotator_id(guess, player_id): player_id for player_id in range(1, 5001)}
        return {annotator: table[annotator] for annotator in exported if annotator in table}

    found = map_back(key)
    assert sorted(found.values()) == sorted(players)  # with the key: every id, back to its player
    assert all(exported[a] == f"query of {p}" or exported[a] == f"another of {p}" for a, p in found.items())
    for guess in ("demo", "play", "bench", "change-me", "", work_folder_key(tmp_path / "other")):
        assert map_back(guess) == {}  # without it: none
