"""Curation of chat contexts (paper §4.2). Each rule is a named function; the importer applies
them in order and counts what each one removed."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import py3langid

from core.text import count_words
from storage.usticker import FileShape, MalformedRecord, read_conversation, sticker_format

CONTEXT_MESSAGES = 8  # how many messages before the sticker are kept and shown
BRIEF_WORDS = 2  # a reply of at most this many words is "brief"
LANGUAGE_SAMPLE_CHARS = 200  # identification needs no more; longer text only costs time


@dataclass(slots=True)
class WindowMessage:
    """A message in the sliding window before a sticker, with its word count computed lazily."""

    message_id: int
    sender: str
    text: str
    is_sticker: bool
    reply_id: int | None
    _words: int | None = None

    @property
    def words(self) -> int:
        if self._words is None:
            self._words = 0 if self.is_sticker else count_words(self.text)
        return self._words


def is_command(text: str) -> bool:
    return text.lstrip().startswith("/")


def dialogue_before(window: Sequence[WindowMessage], min_words: int = 20) -> list[WindowMessage] | None:
    """Rule 1: the sticker is preceded by at least `min_words` words of dialogue.

    Returns the shortest run of messages just before the sticker that holds that many words
    (the context shown to players), or None. Words are counted from the sticker backwards, so
    older messages are never segmented when recent ones already suffice.
    """
    total = 0
    for start in range(len(window) - 1, -1, -1):
        total += window[start].words
        if total >= min_words:
            return list(window)[start:]
    return None


def is_command_driven(window: Sequence[WindowMessage], reply_id: int | None = None) -> bool:
    """Rule 2: a bot exchange — a /command in the window, a reply to one (the bot's answer),
    or a sticker sent in reply to one."""
    commands = {m.message_id for m in window if not m.is_sticker and is_command(m.text)}
    return bool(commands) or any(m.reply_id in commands for m in window) or reply_id in commands


def is_brief_reply_stretch(window: Sequence[WindowMessage], max_share: float = 0.5) -> bool:
    """Rule 3: a stretch dominated by brief replies ("ok", "lol", "yes") gives no real context."""
    texts = [m for m in window if not m.is_sticker]
    if len(texts) < 3:
        return False
    brief = sum(1 for m in texts if m.words <= BRIEF_WORDS)
    return brief / len(texts) > max_share


def detect_language(text: str, sample_chars: int = LANGUAGE_SAMPLE_CHARS) -> str:
    """Rule 5: language tag by identification (py3langid); en and zh enter the game."""
    language, _score = py3langid.classify(text[:sample_chars])
    return language


def script_guess(text: str) -> str:
    """A cheap first guess (zh when CJK characters dominate), used only to skip identification
    of a sticker whose context in that language is already kept."""
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")
    return "zh" if cjk * 3 >= len(text) else "en"


def anonymised(window: Sequence[WindowMessage], sticker_sender: str) -> list[dict]:
    """Chat members become A, B, C… in the order they speak; ids never leave the importer."""
    letters: dict[str, str] = {}

    def letter(sender: str) -> str:
        if sender not in letters:
            n = len(letters)
            letters[sender] = chr(ord("A") + n) if n < 26 else f"P{n}"
        return letters[sender]

    messages = [{"sender": letter(m.sender), "text": m.text if not m.is_sticker else "", "sticker": m.is_sticker}
                for m in window]
    letter(sticker_sender)
    return messages + [{"sender": letters[sticker_sender], "text": "", "sticker": True, "target": True}]


# What the import reports as removed, in the order the rules apply (unknown_format: not a sticker file).
RULES = ("unknown_format", "too_little_dialogue", "command_driven", "brief_replies", "other_language",
         "duplicate_sticker")


@dataclass
class FileCuration:
    """What curating one conversation file produced; small, so it can come back from a worker."""

    name: str
    messages: int = 0
    sticker_messages: int = 0
    stickers: list[tuple[str, str, str]] = field(default_factory=list)  # key, path, format; first use first
    # key, script guess, text to identify the language of, row
    contexts: list[tuple[str, str, str, dict]] = field(default_factory=list)
    removed: Counter = field(default_factory=Counter)
    malformed: list[str] = field(default_factory=list)
    stopped: str | None = None


def curate_conversation(path: Path, min_words: int, domain: str | None, stop_on_error: bool,
                        shape: FileShape | None = None) -> FileCuration:
    """Apply the per-conversation rules to one file (windows never cross files). Language
    identification and the across-files duplicate rule are left to the caller."""
    result = FileCuration(path.name)
    seen: set[str] = set()
    sent: set[tuple[str, str]] = set()

    class _Stop(Exception):
        pass

    def malformed(problem: MalformedRecord) -> None:
        result.malformed.append(str(problem))
        if stop_on_error:
            result.stopped = str(problem)
            raise _Stop

    window: deque[WindowMessage] = deque(maxlen=CONTEXT_MESSAGES)
    try:
        for message in read_conversation(path, on_malformed=malformed, shape=shape):
            result.messages += 1
            if message.sticker is None:
                window.append(WindowMessage(message.message_id, message.from_id, message.text, False,
                                            message.reply_id))
                continue
            _consider_sticker(message, window, domain, min_words, result, seen, sent)
            window.append(WindowMessage(message.message_id, message.from_id, "", True, message.reply_id))
    except _Stop:
        pass
    return result


def _consider_sticker(message, window, domain, min_words, result: FileCuration, seen, sent) -> None:
    result.sticker_messages += 1
    key = Path(message.sticker).name
    fmt = sticker_format(key)
    if fmt is None:
        result.removed["unknown_format"] += 1
        return
    if key not in seen:
        seen.add(key)
        result.stickers.append((key, message.sticker, fmt))
    context = dialogue_before(window, min_words)
    if context is None:
        result.removed["too_little_dialogue"] += 1
        return
    if is_command_driven(context, message.reply_id):
        result.removed["command_driven"] += 1
        return
    if is_brief_reply_stretch(context):
        result.removed["brief_replies"] += 1
        return
    text = " ".join(m.text for m in context if not m.is_sticker)
    guess = script_guess(text)
    if (key, guess) in sent:  # this file already offered a context for the sticker
        result.removed["duplicate_sticker"] += 1
        return
    sent.add((key, guess))
    result.contexts.append((key, guess, text, {
        "conversation": message.conversation, "message_id": message.message_id,
        "messages": anonymised(context, message.from_id), "domain": domain,
        "word_count": sum(m.words for m in context), "priority": 0, "label_count": 0, "skip_count": 0,
    }))
