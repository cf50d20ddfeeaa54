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

from core.vocabulary import ErrorCode

jieba.setLogLevel(logging.WARNING)

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef"
_EMOJI = (
    r"\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF\u3030\u303D\u3297\u3299"
)
# Joiners, variation selectors and skin-tone modifiers belong to the emoji before them.
_EMOJI_PARTS = re.compile(r"[\u200d\ufe0e\ufe0f\U0001F3FB-\U0001F3FF]")
_TOKEN = re.compile(rf"(?P<cjk>[{_CJK}]+)|(?P<emoji>[{_EMOJI}])|(?P<word>[^\W_]+(?:['’][^\W_]+)*)")
# What no line of text may hold: control characters (newlines and tabs included: a query is one
# line), line and paragraph separators, and lone surrogates (not text at all: they cannot be encoded).
_REFUSED_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
_EMOJI_ONLY = re.compile(rf"[{_EMOJI}]")
_SPACES = re.compile(r"\s+")


class QueryTextError(ValueError):
    """Player text that cannot become a query; `code` selects the message shown to the player."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(detail)  # args[0] is the detail, as the player's message shows it
        self.code, self.detail = code, detail

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}" if self.detail else self.code


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


def is_invisible(char: str) -> bool:
    """An invisible format character (Unicode category Cf): soft hyphen, zero-width spaces and
    joiners, bidirectional marks and overrides, word joiner, BOM, tag characters…"""
    return unicodedata.category(char) == "Cf"


def strip_invisible(text: str) -> str:
    return "".join(ch for ch in text if not is_invisible(ch)) if any(map(is_invisible, text)) else text


def normalize_text(text: str) -> str:
    """The one normal form of anything a person writes: invisible format characters removed and
    Unicode NFKC (full-width letters, ligatures and compatibility forms folded). Removing before
    and after NFKC makes it idempotent: removal may bring a base and a combining mark together."""
    return strip_invisible(unicodedata.normalize("NFKC", strip_invisible(text)))


def refused_character(text: str) -> str | None:
    """The first character no line of player text may contain, or None."""
    for char in text:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            return char
    return None


MAX_SEED_QUERY_CHARS = 256
_ONLY_SEPARATORS = re.compile(r"[\s,，、]+")


def seed_query_problem(text: str, *, max_chars: int = MAX_SEED_QUERY_CHARS) -> str | None:
    """Why a query read from a dataset file may not be stored, or None. Seed queries are kept
    verbatim (the released files must round-trip byte for byte, emoji joiners included), so they
    are checked rather than rewritten: no control or invisible characters, no blank or
    separator-only query, no space around it, a bounded length."""
    if not text.strip():
        return "an empty query"
    if len(text) > max_chars:
        return f"a query longer than {max_chars} characters"
    refused = refused_character(text)
    if refused is not None:
        return f"a control character (U+{ord(refused):04X}) in a query"
    invisible = next((ch for ch in text if is_invisible(ch) and ch != "\u200d"), None)  # ZWJ joins emoji
    if invisible is not None:
        return f"an invisible character (U+{ord(invisible):04X}) in a query"
    if text != text.strip():
        return "a space at the start or end of a query"
    if _ONLY_SEPARATORS.fullmatch(text):
        return "a query of nothing but separators"
    return None


def normalize_query(text: str) -> str:
    """The form two queries are compared in for the taboo rule: case, width, spacing, invisible
    characters and surrounding punctuation do not make a query new."""
    text = strip_invisible(unicodedata.normalize("NFKC", strip_invisible(text)).casefold())
    text = _SPACES.sub(" ", text).strip()
    start, end = 0, len(text)
    while start < end and _is_edge_noise(text[start]):
        start += 1
    while end > start and _is_edge_noise(text[end - 1]):
        end -= 1
    return text[start:end] or text


_RUNS = re.compile(r"(.)\1{2,}")
_SPACE_BY_CJK = re.compile(rf"\s+(?=[{_CJK}])|(?<=[{_CJK}])\s+")


def taboo_key(text: str) -> str:
    """The form in which two queries are the same query for the taboo rule: `normalize_query`, and
    near-duplicates collide too — punctuation and symbols anywhere (emoji included) do not count, a
    letter held for emphasis does not (three or more in a row count as one: "sooo hot" is "so hot";
    two stay two, so "good" is not "god"), nor do spaces beside Chinese characters.
    So "so hot", "So hot!!", "so, hot 🔥" and "sooooo hot" are one query; a text of nothing but
    symbols keeps its normal form."""
    normal = normalize_query(text)
    kept = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in normal)
    kept = _SPACES.sub(" ", _RUNS.sub(r"\1", kept)).strip()
    kept = _SPACE_BY_CJK.sub("", kept)
    return kept or normal


def _is_edge_noise(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P")


def clean_query_text(text: str | None, *, max_chars: int) -> str:
    """Validate and normalise what a player typed (a query, a suggestion, a correction).
    Raises QueryTextError with a reason code; returns the text in its normal form (normalize_text)."""
    if text is None:
        raise QueryTextError(ErrorCode.EMPTY)
    refused = refused_character(text)
    if refused is not None:
        raise QueryTextError(ErrorCode.INVALID_CHARS if unicodedata.category(refused) == "Cs" else ErrorCode.CONTROL_CHARS,
                             f"U+{ord(refused):04X}")
    text = _SPACES.sub(" ", normalize_text(text)).strip()
    refused = refused_character(text)  # NFKC maps no character to a control one; checked, not assumed
    if refused is not None:
        raise QueryTextError(ErrorCode.CONTROL_CHARS, f"U+{ord(refused):04X}")
    if not text:
        raise QueryTextError(ErrorCode.EMPTY)
    if len(text) > max_chars:
        raise QueryTextError(ErrorCode.TOO_LONG, str(max_chars))
    # StickerQueries joins a sticker's queries with ", ": a query may not contain that separator
    # (NFKC has already made a full-width comma a plain one).
    text = text.replace(", ", ",")
    if text.startswith("/"):
        raise QueryTextError(ErrorCode.COMMAND)
    tokens = tokenize(text)
    if not tokens:
        raise QueryTextError(ErrorCode.NO_WORDS)
    if all(_EMOJI_ONLY.fullmatch(token) for token in tokens):
        raise QueryTextError(ErrorCode.ONLY_EMOJI)
    return text


# Function words: the words a query may share with a sticker's queries without that meaning it
# describes the sticker. English: the NLTK stop word list (articles, pronouns, auxiliaries,
# prepositions, conjunctions), reviewed for sticker queries: negations ("no", "not", "don't"…),
# question words ("what", "why"…) and a few words that carry a reply on their own ("again", "too",
# "up", "down", "off", "out", "over") are left out, since "no", "why?" or "me too" are what a
# person types to find a sticker. Chinese: structural and aspect particles (的 地 得 了 着 过),
# sentence-final particles (啊 吗 呢 吧 呀 哦 嘛 啦 哇 咯), personal and demonstrative pronouns,
# the copula 是 and common prepositions, conjunctions and adverbs of degree. Interjections that are
# a reply in themselves (哈哈, 嗯, 哎) and negations (不, 没) are content.
_ENGLISH_FUNCTION_WORDS = frozenset("""
i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves
he him his himself she she's her hers herself it it's its itself they them their theirs themselves
this that that'll these those am is are was were be been being have has had having do does did
doing a an the and but if or because as until while of at by for with about against between into
through during before after above below to from in on under further then once here there all any
both each few more most other some such only own same so than very s t can will just should
should've now d ll m o re ve y i'm it'd i've i'll i'd we're they're let's
""".split())
_CHINESE_FUNCTION_WORDS = frozenset("""
的 地 得 了 着 过 之 啊 吗 呢 吧 呀 哦 嘛 啦 哇 咯 呗 么 是 我 你 您 他 她 它 我们 你们 他们 她们 它们
咱 咱们 自己 这 那 这个 那个 这些 那些 这样 那样 这么 那么 一个 个 在 和 与 跟 同 及 或 或者 也 都 就
又 还 很 太 挺 更 最 真 被 把 给 对 从 向 往 到 让 而 但 但是 可是 所以 因为 如果 就是 还是 一下 有点
""".split())
FUNCTION_WORDS = _ENGLISH_FUNCTION_WORDS | _CHINESE_FUNCTION_WORDS

# Words that only say what a sticker looks like (colour, shape, what is drawn, the medium). A
# query made of nothing but these and function words describes the picture, not what the sticker
# says: the paper asks players not to write those, and the engine refuses them in both languages.
VISUAL_WORDS = frozenset("""
yellow red blue green black white orange purple violet pink brown grey gray gold golden silver
colour color colors colours colored coloured colorful colourful circle circles round square
triangle dot dots line lines shape face faces head eyes eye mouth hand hands mask glasses
sunglasses hat emoji emojis sticker stickers picture image photo cartoon drawing drawn icon gif
animated animation background text letters big small little tiny large huge smiley wearing
黄 红 蓝 绿 黑 白 黄色 红色 蓝色 绿色 黑色 白色 橙色 紫色 粉色 粉红色 灰色 棕色 金色 银色 颜色 彩色
圆 圆形 圆圈 方 方形 三角形 形状 脸 黄脸 笑脸 头 眼睛 嘴 嘴巴 手 口罩 眼镜 墨镜 帽子 戴 戴着
表情 表情包 贴纸 图片 图 照片 卡通 画 动图 背景 文字 大 小
""".split())


def is_function_word(token: str) -> bool:
    return token in FUNCTION_WORDS


def content_tokens(tokens) -> list[str]:
    """The tokens that are not function words (emoji are content)."""
    return [t for t in tokens if t not in FUNCTION_WORDS]


def is_visual_only(text: str) -> bool:
    """Whether a query only describes the looks: every word a visual or a function word, and at
    least one visual word. "yellow face with mask" and "黄色的脸" are; "sick yellow face" is not."""
    tokens = tokenize(text)
    content = content_tokens(tokens)
    return bool(content) and all(t in VISUAL_WORDS for t in content)
