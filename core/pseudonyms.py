"""The pseudonym key: the secret behind every annotator and round id an export carries.

An export's ids are keyed hashes (HMAC-SHA256) of database ids, which are small consecutive numbers:
whoever holds the key can hash 1, 2, 3 … and map every id back to a player. So the key must be a
secret nobody can guess, and the export refuses one that is short, low in entropy or a variant of the
placeholder. "Entropy" here is an estimate from the key's text, as password meters make it: the
characters' classes give the bits per character, and a repeated pattern, a run of few distinct
characters or a phrase of words earns only what its pattern or its words are worth.

The demo, `play` and the benchmarks make a random key per work folder and keep it there (0600), so a
demo export is pseudonymous as a real one is, and stable from one run to the next in that folder.
"""

from __future__ import annotations

import hmac
import math
import os
import re
import secrets
from functools import lru_cache
from pathlib import Path

PLACEHOLDER = "change-me"
MIN_BYTES = 32
MIN_BITS = 8 * MIN_BYTES
KEY_FILE = "pseudonym.key"
HOW_TO_MAKE = ('make one with: python -c "import secrets; print(secrets.token_urlsafe(48))" and set '
               'STICKTIONARY_PSEUDONYM_KEY to it (keep it secret and unchanged, so ids stay stable across exports)')
# A word of a passphrase: lower case or capitalised letters with a vowel; each is worth about what a
# diceware word is (12.9 bits), whatever its length.
_WORD = re.compile(r"[A-Z]?[a-z]*[aeiouy][a-z]*", re.ASCII)
WORD_BITS = 13.0
_CLASSES = ((re.compile(r"[0-9]"), 10), (re.compile(r"[a-z]"), 26), (re.compile(r"[A-Z]"), 26))
_HEX = re.compile(r"[0-9a-f]+|[0-9A-F]+")
SYMBOLS = 33  # printable ASCII punctuation and space


def _placeholder(key: str) -> bool:
    squeezed = re.sub(r"[\s_\-.]+", "", key).casefold()
    return "changeme" in squeezed


def _period(key: str) -> int:
    """The length of the shortest block the key repeats (its own length when it repeats none)."""
    return (key + key).find(key, 1)


def _charset_size(text: str) -> int:
    """How many characters the classes of characters the text uses hold (hex counts as 16)."""
    if _HEX.fullmatch(text):
        return 16
    size = sum(n for pattern, n in _CLASSES if pattern.search(text))
    if re.search(r"[^0-9a-zA-Z]", text, re.ASCII):
        size += SYMBOLS
    if any(ord(ch) > 127 for ch in text):
        size += 100  # other scripts: generous, the other checks still apply
    return max(size, 2)


def _word_coverage(key: str) -> tuple[int, int]:
    """(characters covered by word-like runs of 4+ letters, number of such runs)."""
    covered = runs = 0
    for match in re.finditer(r"[A-Za-z]+", key):
        for word in _WORD.findall(match.group()):
            if len(word) >= 4:
                covered += len(word)
                runs += 1
    return covered, runs


def estimated_bits(key: str) -> float:
    """A conservative estimate of the key's entropy in bits."""
    if not key:
        return 0.0
    period = _period(key)
    unit = key[:period]  # a repeated pattern is worth one copy of it
    size = _charset_size(unit)
    per_char = math.log2(size)
    distinct = len(set(unit))
    if distinct < min(size, len(unit)) / 3:
        # Far fewer distinct characters than the classes hold: each carries log2(distinct) bits at most.
        per_char = min(per_char, math.log2(max(distinct, 2)))
    bits = len(unit) * per_char
    covered, words = _word_coverage(unit) if size > 16 else (0, 0)
    if covered >= 0.7 * len(unit):  # mostly words: a passphrase, worth its words and the rest
        bits = min(bits, words * WORD_BITS + (len(unit) - covered) * per_char)
    return bits


def key_problem(key: str | None) -> str | None:
    """None for a usable key; otherwise one line saying what is wrong and how to make a good one."""
    key = key or ""
    if _placeholder(key):
        return f"refusing the pseudonym key: STICKTIONARY_PSEUDONYM_KEY is the placeholder '{PLACEHOLDER}'; {HOW_TO_MAKE}"
    if len(key.encode("utf-8")) < MIN_BYTES:
        return (f"refusing the pseudonym key: STICKTIONARY_PSEUDONYM_KEY is shorter than {MIN_BYTES} bytes, so the "
                f"ids could be mapped back to players; {HOW_TO_MAKE}")
    if estimated_bits(key) < MIN_BITS:
        return (f"refusing the pseudonym key: STICKTIONARY_PSEUDONYM_KEY has too little entropy (about "
                f"{estimated_bits(key):.0f} bits, {MIN_BITS} needed: a repeated pattern, few distinct characters or "
                f"words); {HOW_TO_MAKE}")
    return None


def work_folder_key(folder: Path) -> str:
    """The random key of a work folder (the demo's, play's, a benchmark's): made once, kept in
    `folder/pseudonym.key` readable by its owner only, and read back on every later run. Two processes
    starting at once agree on one key (the file appears whole, by a hard link, or not at all)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / KEY_FILE
    if not path.exists():
        draft = folder / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process was first: use its key
        finally:
            draft.unlink()
    os.chmod(path, 0o600)
    key = path.read_text(encoding="ascii").strip()
    problem = key_problem(key)
    if problem:
        raise ValueError(f"{path}: {problem} (or delete the file to get a new random one)")
    return key


@lru_cache(maxsize=4)
def _keyed(key: str) -> hmac.HMAC:
    return hmac.new(key.encode(), digestmod="sha256")


def _pseudonym(key: str, message: str) -> str:
    # HMAC-SHA256 from a copy of the keyed state: the key's two blocks are hashed once per export, not once
    # for each of the million ids (the digest is the same as hmac.new(key, message)'s).
    mac = _keyed(key).copy()
    mac.update(message.encode())
    return mac.hexdigest()[:16]


def annotator_id(key: str, player_id: int | None) -> str | None:
    """Pseudonymous and stable across exports; without the key it cannot be traced to a player."""
    if player_id is None:
        return None
    return "a" + _pseudonym(key, f"player:{player_id}")


def round_id(key: str, label_round_id: int | None) -> str | None:
    if label_round_id is None:
        return None
    return "r" + _pseudonym(key, f"round:{label_round_id}")
