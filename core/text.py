"""Query text: cleaning player input, normalising for the taboo check, and tokenizing for search.

One tokenizer serves both languages and mixed text: runs of CJK characters go through jieba,
everything else is split into Unicode words (lower-cased), and each emoji is a token of its own.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from functools import lru_cache

import jieba

jieba.setLogLevel(logging.WARNING)

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef"
_EMOJI = (
    r"\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF\u3030\u303D\u3297\u3299"
)
# Joiners, variation selectors and skin-tone modifiers belong to the emoji before them.
_EMOJI_PARTS = re.compile(r"[\u200d\ufe0e\ufe0f\U0001F3FB-\U0001F3FF]")
_TOKEN = re.compile(rf"(?P<cjk>[{_CJK}]+)|(?P<emoji>[{_EMOJI}])|(?P<word>[^\W_]+(?:['’][^\W_]+)*)")
# Any control character, newlines and tabs included: a query is one line of text.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b\u2028\u2029]")
_EMOJI_ONLY = re.compile(rf"[{_EMOJI}]")
_SPACES = re.compile(r"\s+")


class QueryTextError(ValueError):
    """Player text that cannot become a query; `code` selects the message shown to the player."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


@lru_cache(maxsize=65536)
def _jieba_words(run: str) -> tuple[str, ...]:
    return tuple(w for w in jieba.lcut(run, HMM=True) if w.strip())


def tokenize(text: str) -> list[str]:
    """Search tokens of a query or document text (English, Chinese or mixed)."""
    text = _EMOJI_PARTS.sub("", unicodedata.normalize("NFKC", text))
    tokens: list[str] = []
    for match in _TOKEN.finditer(text):
        if match.lastgroup == "cjk":
            tokens.extend(_jieba_words(match.group()))
        elif match.lastgroup == "emoji":
            tokens.append(match.group())
        else:
            tokens.append(match.group().lower().replace("’", "'"))
    return tokens


_LATIN_WORD = re.compile(r"[^\W_]+")


def count_words(text: str) -> int:
    """Words of dialogue, as the curation rules count them: jieba words for Chinese runs."""
    count = 0
    for match in _TOKEN.finditer(text):
        if match.lastgroup == "cjk":
            count += len(_jieba_words(match.group()))
        elif match.lastgroup == "word":
            count += 1
    return count


def normalize_query(text: str) -> str:
    """The form two queries are compared in for the taboo rule: case, width, spacing and
    surrounding punctuation do not make a query new."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _SPACES.sub(" ", text).strip()
    start, end = 0, len(text)
    while start < end and _is_edge_noise(text[start]):
        start += 1
    while end > start and _is_edge_noise(text[end - 1]):
        end -= 1
    return text[start:end] or text


def _is_edge_noise(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P")


def clean_query_text(text: str | None, *, max_chars: int) -> str:
    """Validate and tidy what a player typed. Raises QueryTextError with a reason code."""
    if text is None:
        raise QueryTextError("empty")
    if _CONTROL.search(text):
        raise QueryTextError("control_chars")
    text = _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()
    if not text:
        raise QueryTextError("empty")
    if len(text) > max_chars:
        raise QueryTextError("too_long", str(max_chars))
    # StickerQueries joins a sticker's queries with ", ": a query may not contain that separator.
    text = text.replace(", ", ",").replace("，", ",") if ", " in text else text
    if text.startswith("/"):
        raise QueryTextError("command")
    tokens = tokenize(text)
    if not tokens:
        raise QueryTextError("no_words")
    if all(_EMOJI_ONLY.fullmatch(token) for token in tokens):
        raise QueryTextError("only_emoji")
    return text
