"""Every catalogue text, rendered in both languages with sample values, reads as text for a person:
no missing translation, no leftover placeholder, no key name or internal code, Chinese punctuation
in Chinese, no Chinese in English, plural forms where a count meets a noun, and a translation for
every error code the engine and the bots raise and every status a player or moderator is shown.

Generic on purpose: it walks whatever keys the catalogues hold, so texts added later are checked too.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from bots.messages.catalogue import Catalogue, quoted
from core.vocabulary import ErrorCode
from storage.models import QueryStatus

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ("en", "zh")
PLURAL_FORMS = {"zero", "one", "two", "few", "many", "other"}
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\u3000-\u303f\uff00-\uffef]")
CJK_CHAR = r"[\u3400-\u4dbf\u4e00-\u9fff]"
SNAKE = re.compile(r"(?<![/\w])[a-z]+(?:_[a-z0-9]+)+\b")
MARKUP = re.compile(r"\w+://\S+|</?[a-z]+[^>]*>")
SAMPLE_WORD = {"en": "Ada", "zh": "小明"}


def _is_plural(value) -> bool:
    return isinstance(value, dict) and "other" in value and set(value) <= PLURAL_FORMS | {"by"}


def _entries(strings: dict):
    """(key path, text or plural dict) for every text of a catalogue."""
    for key, value in strings.items():
        if isinstance(value, dict) and not _is_plural(value):
            for code, text in value.items():
                yield f"{key}.{code}", text
        else:
            yield key, value


def _catalogues():
    return {language: Catalogue(language) for language in LANGUAGES}


def _forms(value) -> list[str]:
    return [value[form] for form in value if form != "by"] if _is_plural(value) else [value]


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _render(catalogue: Catalogue, path: str, value, number: int) -> list[str]:
    """Every form of one entry, through the Catalogue as the bots call it, with `number` for every
    placeholder (a count, a rank, a name: all are shown as text) and a word for `status`."""
    fields = set().union(*(_fields(form) for form in _forms(value)))
    # a number everywhere (counts, ranks, ids, dates: all shown as text), a word for names
    values = {name: SAMPLE_WORD[catalogue.language] if re.search(r"name|pseudonym|nick", name) else number
              for name in fields}
    if "status" in values:
        values["status"] = "accepted"  # the code, as the engine hands it over
    if "language" in values:
        values["language"] = "zh"  # likewise
    rendered = []
    if path.startswith("error."):
        rendered.append(catalogue.error(path.split(".", 1)[1], str(number)))
        rendered.append(catalogue.error(path.split(".", 1)[1], f"{path.split('.', 1)[1]}: {number}"))
    elif "." in path:  # a table of words: status.accepted, languages.zh
        section, code = path.split(".", 1)
        rendered.append(catalogue.strings[section][code].format(**values))
    else:
        rendered.append(catalogue(path, **values))
        if _is_plural(value) and number != 1:  # every form, whichever value picks it
            for form in _forms(value):
                rendered.append(form.format(**values))
    return rendered


def _all_rendered():
    for language, catalogue in _catalogues().items():
        for path, value in _entries(catalogue.strings):
            for number in (1, 2, 12):
                for text in _render(catalogue, path, value, number):
                    yield language, path, text


def test_every_key_exists_in_both_languages():
    en, zh = (dict(_entries(Catalogue(language).strings)) for language in LANGUAGES)
    assert sorted(set(en) - set(zh)) == [], "missing in zh.json"
    assert sorted(set(zh) - set(en)) == [], "missing in en.json"
    for path in en:
        if not isinstance(en[path], str | dict) or not isinstance(zh[path], str | dict):
            pytest.fail(f"{path}: not a text")
        # the same placeholders in both languages (a plural entry: over its forms)
        en_fields = set().union(*(_fields(f) for f in _forms(en[path])))
        zh_fields = set().union(*(_fields(f) for f in _forms(zh[path])))
        assert en_fields == zh_fields, f"{path}: placeholders differ: {en_fields} vs {zh_fields}"


def test_rendered_texts_hold_no_placeholder_key_name_or_code():
    keys = {path.rsplit(".", 1)[-1] for path, _ in _entries(Catalogue("en").strings)}
    codes = {path.split(".", 1)[1] for path, _ in _entries(Catalogue("en").strings) if path.startswith("error.")}
    problems = []
    for language, path, text in _all_rendered():
        if "{" in text or "}" in text:
            problems.append(f"{language} {path}: leftover brace: {text!r}")
        text = MARKUP.sub(" ", text)  # links and tags are for Telegram, not words of the text
        for name in SNAKE.findall(text):
            problems.append(f"{language} {path}: identifier {name!r} in {text!r}")
        words = set(re.findall(r"(?<![/\w])[a-z_]+\b", text))
        if language == "zh":
            # lowercase Latin words in Chinese are codes, except the arguments of a /command
            leaked = {w for w in words if w not in {"on", "off"} and not re.search(rf"/\w+ {w}\b", text)}
            if leaked:
                problems.append(f"zh {path}: Latin words {sorted(leaked)} in {text!r}")
        if path.startswith("error."):
            leaked = {c for c in codes if re.search(rf"(?<![\w/]){re.escape(c)}:", text)}
            if leaked:
                problems.append(f"{language} {path}: error code {sorted(leaked)} in {text!r}")
        leaked_keys = {k for k in keys if "_" in k and k in text}
        if leaked_keys:
            problems.append(f"{language} {path}: key names {sorted(leaked_keys)} in {text!r}")
    assert problems == []


def test_chinese_uses_full_width_punctuation_and_english_no_chinese():
    problems = []
    for language, path, text in _all_rendered():
        if language == "en":
            if CJK.search(text):
                problems.append(f"en {path}: Chinese in {text!r}")
            continue
        if ", " in text:
            problems.append(f"zh {path}: ', ' as a separator in {text!r}")
        # half-width , . ! ? ; : ( ) next to a Chinese character: the full-width form is due
        near = re.findall(rf"{CJK_CHAR}[,.!?;:()]|[,.!?;:()]{CJK_CHAR}", text)
        if near:
            problems.append(f"zh {path}: half-width punctuation {near} in {text!r}")
        # the house style writes numbers against Chinese characters: 第1名, not 第 1 名
        # (an example inside quotes, such as “3 开心的猫”, shows what to type and keeps its space)
        # (nor a label such as “#12 已发放”)
        spaced = re.findall(rf"{CJK_CHAR} \d|(?<![#\d])\d+ {CJK_CHAR}", re.sub(r"“[^”]*”", "“”", text))
        if spaced:
            problems.append(f"zh {path}: spaces around a number {spaced} in {text!r}")
        if "..." in text:
            problems.append(f"zh {path}: '...' instead of '……' in {text!r}")
    assert problems == []


def test_english_counts_agree_with_their_nouns():
    """A number followed by a plural noun must come from a plural entry: "1 queries" is a bug."""
    problems = []
    for language, path, text in _all_rendered():
        if language != "en":
            continue
        for match in re.finditer(r"(?<![\d#./])1 (?!is\b|was\b|has\b|does\b|this\b)([a-z]+s)\b", text):
            problems.append(f"en {path}: {match.group()!r} in {text!r}")
    assert problems == []


def _raised_codes() -> set[str]:
    codes = {str(code) for code in ErrorCode}  # the engine's codes, and any still raised as a literal:
    for folder in ("core", "bots"):
        for path in (ROOT / folder).rglob("*.py"):
            source = path.read_text(encoding="utf-8")
            codes |= set(re.findall(r"GameError\(\s*\"(\w+)\"", source))
            codes |= set(re.findall(r"QueryTextError\(\s*\"(\w+)\"", source))
    return codes


def test_every_error_code_raised_has_a_translation_in_both_languages():
    codes = _raised_codes()
    assert {"taboo", "visual_only", "too_long", "finish_task_first"} <= codes  # the grep found them
    for language in LANGUAGES:
        errors = Catalogue(language).strings["error"]
        assert sorted(codes - set(errors)) == [], f"error codes without a {language} text"


def test_every_status_shown_is_translated():
    for language, catalogue in _catalogues().items():
        for status in QueryStatus:
            word = catalogue.status(status)
            assert word and word != status.value or language == "en" and "_" not in status.value, (language, status)
        # a moderator's decision is confirmed in words, one text per outcome
        for status in (QueryStatus.ACCEPTED, QueryStatus.CORRECTED, QueryStatus.DISCARDED):
            assert status.value not in catalogue(f"review_done_{status.value}")
    assert Catalogue("zh")("review_done_accepted") != Catalogue("zh")("review_done_discarded")


def test_language_codes_are_shown_as_names():
    assert "英文" in Catalogue("zh")("review_round", position=1, waiting=2, language="en", author="p1")
    assert "Chinese" in Catalogue("en")("review_round", position=1, waiting=2, language="zh", author="p1")


def test_error_details_never_show_the_code():
    for language in LANGUAGES:
        text = Catalogue(language).error("too_long", "too_long: 64")
        assert "too_long" not in text and "64" in text


def test_lists_use_each_languages_separator():
    assert quoted(["sick", "ill"], "en") == "“sick”, “ill”"
    assert quoted(["白期待了", "好累"], "zh") == "“白期待了”、“好累”"
    assert quoted([], "zh") == ""


def test_plural_forms_follow_the_named_value():
    en = Catalogue("en")
    one = en("round_submitted", count=1, round=2, queries="“a”")
    other = en("round_submitted", count=3, round=2, queries="“a”")
    assert "1 query submitted" in one and "3 queries submitted" in other
