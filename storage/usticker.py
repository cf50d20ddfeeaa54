"""U-Sticker files: streaming reader for the per-conversation JSON, and the domain index.

The dataset does not document how each file nests its records, so the reader accepts the
plausible shapes, found by looking at where the first ``message_id`` key sits:

* a JSON array of records: ``[{...}, ...]``
* records under a key, at any depth: ``{"messages": [{...}]}``
* an object keyed by message id: ``{"123": {...}, ...}``
* JSON Lines: one record per line

Files are never loaded whole: ijson parses them incrementally.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ijson

RECORD_KEY = "message_id"


@dataclass(frozen=True, slots=True)
class ChatMessage:
    conversation: str
    message_id: int
    from_id: str
    reply_id: int | None
    sticker: str | None
    text: str


class MalformedRecord(ValueError):
    def __init__(self, path: Path, index: int, reason: str):
        super().__init__(f"{path.name}: record #{index}: {reason}")
        self.path, self.index, self.reason = path, index, reason


class UnknownShape(ValueError):
    pass


def _shape(path: Path) -> tuple[str, str]:
    """('jsonl', '') | ('items', prefix) | ('kvitems', prefix)."""
    with path.open("rb") as f:
        head = f.read(4096).lstrip()
    if head[:1] == b"{":
        first_line = head.split(b"\n", 1)[0]
        try:
            if RECORD_KEY in json.loads(first_line):
                return "jsonl", ""
        except (ValueError, TypeError):
            pass
    with path.open("rb") as f:
        try:
            for prefix, event, value in ijson.parse(f):
                if event == "map_key" and value == RECORD_KEY:
                    parent, _, last = prefix.rpartition(".")
                    if last == "item" or prefix == "item":
                        return "items", prefix
                    return "kvitems", parent
        except ijson.JSONError as error:
            raise UnknownShape(f"{path.name}: not valid JSON ({error})") from None
    raise UnknownShape(f"{path.name}: no record with a '{RECORD_KEY}' field found")


_DECODER = json.JSONDecoder()
_SKIP = re.compile(r"[\s,]*")


def _array_records(path: Path, chunk_size: int = 1 << 20) -> Iterator[object]:
    """Top-level JSON array, decoded record by record with the C decoder over a sliding buffer
    (several times faster than an event parser, and still never the whole file in memory)."""
    with path.open(encoding="utf-8") as f:
        buffer = f.read(chunk_size).lstrip()
        if not buffer.startswith("["):
            raise UnknownShape(f"{path.name}: expected a JSON array")
        position, at_end = 1, False
        while True:
            position = _SKIP.match(buffer, position).end()
            if position < len(buffer) and buffer[position] == "]":
                return
            try:
                record, end = _DECODER.raw_decode(buffer, position)
            except ValueError as error:
                if at_end:
                    yield MalformedJson(str(error))
                    return
                more = f.read(chunk_size)
                at_end = not more
                buffer, position = buffer[position:] + more, 0
                continue
            if end == len(buffer) and not at_end:  # a number or literal may continue in the next chunk
                more = f.read(chunk_size)
                at_end = not more
                buffer, position = buffer[position:] + more, 0
                continue
            yield record
            position = end
            if position > chunk_size:
                buffer, position = buffer[position:], 0


def _raw_records(path: Path) -> Iterator[object]:
    kind, prefix = _shape(path)
    if kind == "items" and prefix == "item":
        yield from _array_records(path)
        return
    if kind == "jsonl":
        with path.open("rb") as f:
            for line in f:
                if line.strip():
                    try:
                        yield json.loads(line)
                    except ValueError as error:
                        yield MalformedJson(str(error))
        return
    with path.open("rb") as f:
        if kind == "items":
            yield from ijson.items(f, prefix, use_float=True)
        else:
            for _key, value in ijson.kvitems(f, prefix, use_float=True):
                yield value


@dataclass(frozen=True)
class MalformedJson:
    reason: str


def _as_int(value: object) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("boolean id")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return int(str(value).strip())


def read_conversation(path: Path, on_malformed=None) -> Iterator[ChatMessage]:
    """Yield the messages of one conversation file in file order.

    A malformed record is passed to ``on_malformed(MalformedRecord)``; without a callback it raises.
    """
    conversation = path.name
    for index, raw in enumerate(_raw_records(path)):
        try:
            if type(raw) is not dict:
                if isinstance(raw, MalformedJson):
                    raise ValueError(f"invalid JSON: {raw.reason}")
                raise ValueError(f"expected an object, got {type(raw).__name__}")
            message_id = raw.get(RECORD_KEY)
            if type(message_id) is not int:
                message_id = _as_int(message_id)
                if message_id is None:
                    raise ValueError(f"no '{RECORD_KEY}'")
            reply_id = raw.get("reply_id")
            if reply_id is not None and type(reply_id) is not int:
                reply_id = _as_int(reply_id)
            sticker = raw.get("sticker") or None
            if sticker is not None and type(sticker) is not str:
                raise ValueError("'sticker' is not a path")
            text = raw.get("text") or ""
            if type(text) is not str:
                text = str(text)
            from_id = raw.get("from_id")
            yield ChatMessage(conversation, message_id, "" if from_id is None else str(from_id), reply_id,
                              sticker, text)
        except (ValueError, TypeError) as error:
            problem = MalformedRecord(path, index, str(error))
            if on_malformed is None:
                raise problem from None
            on_malformed(problem)


def conversation_files(folder: Path) -> list[Path]:
    """The per-conversation files (01.json … 67.json, or .jsonl), in numeric order."""
    files = [p for p in folder.iterdir() if p.suffix in (".json", ".jsonl") and p.is_file()]

    def order(path: Path):
        digits = re.match(r"\d+", path.stem)
        return (0, int(digits.group()), path.name) if digits else (1, 0, path.name)

    return sorted(files, key=order)


def read_domains(path: Path) -> dict[str, str]:
    """idx_to_domain.txt: one ``key<separator>domain`` per line (tab, comma, colon or spaces)."""
    domains: dict[str, str] = {}
    if not path.exists():
        return domains
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = re.split(r"\t|,|:|\s+", line, maxsplit=1)
        if len(parts) == 2:
            domains[parts[0].strip()] = parts[1].strip()
    return domains


STICKER_FORMATS = {".png": "png", ".gif": "gif", ".webm": "webm", ".webp": "webp", ".tgs": "tgs"}


def sticker_format(path: str) -> str | None:
    return STICKER_FORMATS.get(Path(path).suffix.lower())
