"""Nicknames: what leaderboards and the prize list show instead of a player's Telegram name.

Every player has one from the start, generated from their id (an adjective and an animal in the
language they play in, e.g. "Brave Otter 17", "勇敢的水獭17"), and may choose their own with /name.
A chosen one is checked here: normalised with the project's text normaliser, 2–20 characters, with
at least one letter or digit, no links or @handles, no words from a short list of insults.
"""

from __future__ import annotations

import re
import unicodedata

from core.text import normalize_query, normalize_text, refused_character
from core.vocabulary import ErrorCode

MIN_CHARS, MAX_CHARS = 2, 20

_ADJECTIVES = {
    "en": ("Brave", "Calm", "Clever", "Cosy", "Curious", "Daring", "Eager", "Fuzzy", "Gentle", "Happy",
           "Jolly", "Kind", "Lucky", "Merry", "Nimble", "Quick", "Quiet", "Shiny", "Sunny", "Witty"),
    "zh": ("勇敢的", "安静的", "聪明的", "温暖的", "好奇的", "大胆的", "热心的", "毛茸茸的", "温柔的", "快乐的",
           "开朗的", "善良的", "幸运的", "欢乐的", "灵巧的", "敏捷的", "沉稳的", "闪亮的", "阳光的", "机智的"),
}
_ANIMALS = {
    "en": ("Otter", "Panda", "Fox", "Owl", "Koala", "Heron", "Lynx", "Seal", "Gecko", "Hare",
           "Badger", "Crane", "Dolphin", "Finch", "Llama", "Moose", "Puffin", "Robin", "Tiger", "Yak"),
    "zh": ("水獭", "熊猫", "狐狸", "猫头鹰", "考拉", "白鹭", "猞猁", "海豹", "壁虎", "野兔",
           "獾", "仙鹤", "海豚", "雀", "羊驼", "驼鹿", "海鹦", "知更鸟", "老虎", "牦牛"),
}
# Not a moderation system: a few obvious words, so that a leaderboard is not a place for insults.
_OFFENSIVE = ("fuck", "shit", "bitch", "cunt", "nigger", "nigga", "faggot", "whore", "slut", "retard",
              "nazi", "hitler", "傻逼", "傻b", "煞笔", "操你", "草泥马", "妈的", "婊子", "贱人", "去死")
_LINK = re.compile(r"(https?://|www\.|t\.me/|@\w|\.(com|net|org|ru|cn)\b)", re.I)


class NicknameError(ValueError):
    """`code` is a catalogue error code: nickname_empty, nickname_length, nickname_symbols,
    nickname_refused, nickname_taken."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(detail or code)
        self.code, self.detail = code, detail


def default_nickname(player_id: int, language: str | None) -> str:
    """The nickname a player has until they choose one: fixed for a player id and language."""
    words = "zh" if language == "zh" else "en"
    adjectives, animals = _ADJECTIVES[words], _ANIMALS[words]
    # A multiplicative hash spreads consecutive ids over the word pairs; the id keeps it unique.
    mixed = (player_id * 2654435761) & 0xFFFFFFFF
    adjective, animal = adjectives[mixed % len(adjectives)], animals[(mixed // len(adjectives)) % len(animals)]
    return f"{adjective}{animal}{player_id}" if words == "zh" else f"{adjective} {animal} {player_id}"


def nickname_of(player_id: int, nickname: str | None, language: str | None) -> str:
    return nickname or default_nickname(player_id, language)


def clean_nickname(text: str | None) -> tuple[str, str]:
    """The nickname as shown and its key (the normalised form two nicknames are compared in);
    raises NicknameError when it cannot be one."""
    if text is None or refused_character(text) is not None:
        raise NicknameError(ErrorCode.NICKNAME_SYMBOLS)
    shown = re.sub(r"\s+", " ", normalize_text(text)).strip()
    if not shown:
        raise NicknameError(ErrorCode.NICKNAME_EMPTY)
    if not MIN_CHARS <= len(shown) <= MAX_CHARS:
        raise NicknameError(ErrorCode.NICKNAME_LENGTH, f"{MIN_CHARS}–{MAX_CHARS}")
    if not any(unicodedata.category(ch)[0] in "LN" for ch in shown):
        raise NicknameError(ErrorCode.NICKNAME_SYMBOLS)
    key = normalize_query(shown)
    squashed = re.sub(r"[\W_]+", "", key)
    if _LINK.search(shown) or any(word in squashed for word in _OFFENSIVE):
        raise NicknameError(ErrorCode.NICKNAME_REFUSED)
    return shown, key


__all__ = ["NicknameError", "clean_nickname", "default_nickname", "nickname_of", "MIN_CHARS", "MAX_CHARS"]
