"""The labeler's honest preview and the taboo list, through the engine (issue 11, points 2 and 3)."""

import random

import pytest

from core.game import Game, GameError
from core.search import BM25Index
from core.text import content_tokens, is_visual_only, tokenize
from storage.db import session_scope
from storage.models import ChatContext, ContextStatus, Query, QuerySource, QueryStatus, Sticker
from tests.helpers import STORY, make_player

# The target is the only sticker with a chat context, so every label round is about it.
EN_TARGET = ["sick day", "take care", "Take care!", "with love"]
EN_OTHERS = [["sick of this job"], ["sick of this"], ["this is sick"], ["dance party"], ["out of office"]]
ZH_TARGET = ["哭了", "难受"]
ZH_OTHERS = [["累死我了"], ["好烦啊"], ["好期待"], ["开心"]]


def _world(db, settings, target, others, language, discarded=()):
    with session_scope(db) as session:
        ids = []
        for i in range(1 + len(others)):
            sticker = Sticker(key=f"{2000 + i}.png", file_path=f"stickers/{2000 + i}.png", format="png")
            session.add(sticker)
            session.flush()
            ids.append(sticker.id)
        session.add(ChatContext(sticker_id=ids[0], conversation="01.json", message_id=0, messages=STORY,
                                language=language, status=ContextStatus.APPROVED))
        for sticker_id, texts in zip(ids, [target, *others], strict=True):
            for text in texts:
                session.add(Query(sticker_id=sticker_id, language=language, text=text,
                                  normalized_text=text.lower().strip("!"), source=QuerySource.SEED,
                                  status=QueryStatus.VALIDATED))
        for text in discarded:
            session.add(Query(sticker_id=ids[0], language=language, text=text, normalized_text=text,
                              source=QuerySource.SEED, status=QueryStatus.DISCARDED))
    return Game.open(db, settings.replace(rules={"preview_hits": 3}), rng=random.Random(1)), ids


def test_function_and_visual_words_lists():
    assert content_tokens(tokenize("so sick of this")) == ["sick"]
    assert content_tokens(tokenize("白期待了")) == ["白", "期待"]
    assert content_tokens(tokenize("了 的 啊 吗 呢 吧 是 我 你")) == []
    assert content_tokens(tokenize("no way")) == ["no", "way"]  # a negation is what the query says
    for text in ("yellow face with mask", "黄色的脸", "戴口罩的黄脸", "yellow circle"):
        assert is_visual_only(text), text
    for text in ("sick yellow face", "so sick of this", "了", "我哭了", "a red heart"):
        assert not is_visual_only(text), text


def test_search_sharing_keeps_scores_and_drops_function_word_only_matches():
    texts = ["累死我了", "好期待", "哭了", "开心", "难过", "生气", "无语", "晚安"]
    index = BM25Index.from_documents((i, tokenize(text)) for i, text in enumerate(texts, 1))
    tokens = tokenize("白期待了")
    full = index.search(tokens, k=10, target=3)
    assert {h.sticker_id for h in full.hits} == {1, 2, 3} and full.target_rank is not None  # parity search
    shared = index.search_sharing(tokens, content_tokens(tokens), k=10, target=3)
    assert [h.sticker_id for h in shared.hits] == [2] and shared.target_rank is None
    assert shared.hits[0].score == next(h.score for h in full.hits if h.sticker_id == 2)  # same BM25 score
    assert index.search_sharing(tokens, [], k=10).hits == []


def test_english_preview_verdicts(db, settings):
    game, ids = _world(db, settings, EN_TARGET, EN_OTHERS, "en")
    player = make_player(game, 1)
    task = game.assignment.next_task(player, prefer="labeler")
    assert task.sticker.id == ids[0]
    # "so sick of this": three stickers share more with it; the target is ranked, but not in the 3-tile grid.
    sick = game.labeling.add_query(player, task.round_id, "so sick of this")
    assert sick.verdict == "ranked" and sick.target_rank == 4 and sick.total == 6
    assert len(sick.hits) == 3 and ids[0] not in [s.id for s in sick.hits] and sick.target_position is None
    assert set(ids[1:4]) == {s.id for s in sick.hits}
    # only "with" in common with the target: no rank; "out of office" is in the grid for "out", a content word.
    late = game.labeling.add_query(player, task.round_id, "running late again")
    assert late.verdict == "not_found" and late.target_rank is None and late.hits == []
    of = game.labeling.add_query(player, task.round_id, "out with friends")
    assert of.verdict == "function_words" and of.target_rank is None
    assert [s.id for s in of.hits] == [ids[5]]  # it shares "out" with "out of office", a content word
    what = game.labeling.add_query(player, task.round_id, "with the")
    assert what.verdict == "function_words" and what.hits == [] and what.target_rank is None
    day = game.labeling.add_query(player, task.round_id, "sick day off")
    assert day.verdict == "ranked" and day.target_rank == 1 and day.target_position == 1
    assert day.hits[0].id == ids[0]
    # the label view carries the same previews, one per query in order
    view = game.assignment.current_task(player)
    assert [p.query.text for p in view.previews] == [q.text for q in view.queries]
    assert [(p.verdict, p.target_rank, p.target_position) for p in view.previews] == [
        ("ranked", 4, None), ("not_found", None, None), ("function_words", None, None),
        ("function_words", None, None), ("ranked", 1, 1)]
    assert all(p.total == 6 for p in view.previews)


def test_visual_only_is_refused_with_advice_in_both_languages(db, settings):
    game, _ = _world(db, settings, EN_TARGET, EN_OTHERS, "en")
    player = make_player(game, 1)
    task = game.assignment.next_task(player, prefer="labeler")
    for text in ("yellow face with mask", "yellow circle", "a yellow face"):
        with pytest.raises(GameError) as error:
            game.labeling.add_query(player, task.round_id, text)
        assert error.value.code == "visual_only"
    assert game.labeling.add_query(player, task.round_id, "sick yellow face").verdict == "ranked"
    assert game.assignment.current_task(player).queries[0].text == "sick yellow face"  # nothing else was stored


def test_chinese_particle_does_not_find_the_sticker(db, settings):
    game, ids = _world(db, settings, ZH_TARGET, ZH_OTHERS, "zh")
    player = make_player(game, 1, "zh")
    task = game.assignment.next_task(player, prefer="labeler")
    preview = game.labeling.add_query(player, task.round_id, "白期待了")
    assert preview.verdict == "function_words" and preview.target_rank is None and preview.total == 5
    assert [s.id for s in preview.hits] == [ids[3]]  # 好期待 shares 期待; 累死我了 shares only 了
    money = game.labeling.add_query(player, task.round_id, "钱打水漂了")
    assert money.verdict == "function_words" and money.hits == []
    cried = game.labeling.add_query(player, task.round_id, "我哭了")
    assert cried.verdict == "ranked" and cried.target_rank == 1 and cried.target_position == 1
    for text in ("黄色的脸", "戴口罩的黄脸"):
        with pytest.raises(GameError) as error:
            game.labeling.add_query(player, task.round_id, text)
        assert error.value.code == "visual_only"


def test_taken_lists_the_taboo_most_frequent_first(db, settings):
    game, ids = _world(db, settings, EN_TARGET, EN_OTHERS, "en", discarded=["thrown away"])
    first, second = make_player(game, 1), make_player(game, 2)
    task = game.assignment.next_task(first, prefer="labeler")
    # "take care" was given twice (its first writing is shown), then the others; discarded ones never.
    assert task.taken == ["take care", "sick day", "with love"]
    game.labeling.add_query(first, task.round_id, "feeling ill")
    assert game.assignment.current_task(first).taken == ["take care", "sick day", "with love"]  # never the player's own
    other = game.assignment.next_task(second, prefer="labeler")
    assert other.sticker.id == ids[0]
    # another player's draft refuses the same text, so it is shown too
    assert other.taken == ["take care", "sick day", "with love", "feeling ill"]
    with pytest.raises(GameError) as error:
        game.labeling.add_query(second, other.round_id, "Feeling ill")
    assert error.value.code == "taboo"
    game.labeling.skip_round(first, task.round_id)  # the draft is gone with the round
    assert game.assignment.current_task(second).taken == ["take care", "sick day", "with love"]


def test_taken_is_capped_and_counts_repeats(db, settings):
    many = ["sick day"] + [f"word{i}" for i in range(12)] + ["word7", "word7", "word3"]
    game, _ = _world(db, settings, many, EN_OTHERS, "en")
    player = make_player(game, 1)
    taken = game.assignment.next_task(player, prefer="labeler").taken
    assert len(taken) == 8 and taken[:2] == ["word7", "word3"] and taken[2] == "sick day"


@pytest.mark.parametrize("docs_count", [40, 400])  # dense and sparse accumulation
def test_search_sharing_scores_equal_the_index_scores(docs_count):
    rng = random.Random(docs_count)
    words = [f"w{i}" for i in range(60)] + ["of", "the", "了"]
    documents = [(s, rng.choices(words, k=rng.randint(1, 6))) for s in range(docs_count)]
    index = BM25Index.from_documents(documents)
    for _ in range(30):
        tokens = rng.choices(words, k=rng.randint(1, 4))
        content = content_tokens(tokens)
        dense = index.scores(tokens)
        result = index.search_sharing(tokens, content, k=docs_count, target=documents[0][0])
        sharing = {s for s, doc in documents if set(doc) & set(content)}
        assert {h.sticker_id for h in result.hits} == {s for s in sharing if dense[s] > 0}
        for hit in result.hits:
            assert hit.score == pytest.approx(dense[hit.sticker_id], rel=1e-12)
        if 0 in sharing and dense[0] > 0:
            assert result.target_rank == sum(1 for s in sharing if dense[s] >= dense[0])
        else:
            assert result.target_rank is None
