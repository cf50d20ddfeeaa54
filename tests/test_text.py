import pytest

from core.text import QueryTextError, clean_query_text, count_words, normalize_query, tokenize


def test_english_tokens_are_lowercased_unicode_words_with_emoji_kept():
    assert tokenize("Thumbs UP 👍🏻 don’t") == ["thumbs", "up", "👍", "don't"]


def test_chinese_goes_through_jieba_and_mixed_text_keeps_both():
    assert tokenize("你说得对 nice 👍") == ["你", "说得对", "nice", "👍"]
    assert "喝茶" in tokenize("我就静静的,喝茶")


def test_word_count_uses_jieba_for_chinese():
    assert count_words("我们今天晚上一起去吃饭") == len([w for w in tokenize("我们今天晚上一起去吃饭")])
    assert count_words("hello there my friend 😂") == 4


@pytest.mark.parametrize("a,b", [("Thumbs up", "thumbs  up!"), ("ＬＯＬ", "lol"), ("好的。", "好的")])
def test_normalisation_makes_trivial_variants_equal(a, b):
    assert normalize_query(a) == normalize_query(b)


def test_normalisation_keeps_emoji():
    assert normalize_query("thumbs up 👍") != normalize_query("thumbs up")


@pytest.mark.parametrize("text,code", [
    (None, "empty"), ("", "empty"), ("   ", "empty"), ("x" * 5000, "too_long"), ("😂😂👍", "only_emoji"),
    ("hi\x07there", "control_chars"), ("two\nlines", "control_chars"), ("/start", "command"), ("?!…", "no_words"),
])
def test_bad_query_text_is_refused_with_a_reason(text, code):
    with pytest.raises(QueryTextError) as error:
        clean_query_text(text, max_chars=64)
    assert error.value.code == code


def test_the_export_separator_cannot_appear_inside_a_query():
    assert clean_query_text("oh, no", max_chars=64) == "oh,no"
