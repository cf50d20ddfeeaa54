"""U-Sticker files: streaming reader for the per-conversation JSON, and the domain index.

The dataset does not document how each file nests its records, so the reader accepts the
plausible shapes, found by looking at where the first ``message_id`` key sits:

* a JSON array of records: ``[{...}, ...]``
* records under a key, at any depth: ``{"messages": [{...}]}``
* an object keyed by message id: ``{"123": {...}, ...}``
* JSON Lines (or any run of JSON objects): one record per value

Files come from outside and are never trusted, nor loaded whole. Before a file is read,
`inspect` walks it once with ijson's event parser (which keeps no path, so its memory does not
grow with the nesting) and refuses, with `RefusedFile`, anything that is not UTF-8 JSON of a
known shape: an empty file, another encoding, nesting deeper than `MAX_DEPTH`, garbage after the
value, several values that are not all records. Records are then streamed; fields that would
harm the database or the bots (oversized text, ids out of range, sticker paths that leave the
sticker folder) make the record malformed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import ijson

RECORD_KEY = "message_id"
MAX_DEPTH = 64  # U-Sticker records sit at depth 2 or 3; 64 leaves room for any plausible wrapper
MAX_TEXT_CHARS = 65_536  # one chat message (Telegram's own limit is 4,096)
MAX_PATH_CHARS = 1024
MAX_ID = 2**63 - 1  # message ids are 64-bit integer columns
UTF8_BOM = b"\xef\xbb\xbf"
_FOREIGN_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16",
                 b"\xfe\xff": "UTF-16"}
# C0 controls other than tab, newline and carriage return; PostgreSQL refuses NUL in text.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATES = re.compile("[\ud800-\udfff]")


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


class RefusedFile(ValueError):
    """A file that cannot be imported at all; the message names the file and says why."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{Path(path).name}: {reason}")
        self.path, self.reason = Path(path), reason


class UnknownShape(RefusedFile):
    pass


@dataclass(frozen=True)
class FileShape:
    kind: str  # "jsonl" | "items" | "kvitems"
    prefix: str
    bom: bool


def _check_encoding(path: Path, head: bytes) -> bool:
    """True when the file starts with a UTF-8 byte order mark (allowed, and skipped)."""
    if not head.strip(b" \t\r\n" + UTF8_BOM):
        raise RefusedFile(path, "the file is empty")
    for bom, name in _FOREIGN_BOMS.items():
        if head.startswith(bom):
            raise RefusedFile(path, f"the file is {name}-encoded; save it as UTF-8")
    if b"\x00" in head[:4096]:
        raise RefusedFile(path, "the file holds NUL bytes: not UTF-8 JSON (UTF-16 without a byte order mark?)")
    return head.startswith(UTF8_BOM)


def inspect(path: Path) -> FileShape:
    """Check a whole conversation file in one streaming pass and say where its records are.

    Memory stays constant whatever the file holds: the event parser keeps only a small stack
    per level, the walk keeps the keys of at most `MAX_DEPTH` levels, and every string it sees
    is dropped at once."""
    path = Path(path)
    with path.open("rb") as f:
        bom = _check_encoding(path, f.read(4096))
        f.seek(len(UTF8_BOM) if bom else 0)
        stack: list[object] = []  # per open container: the current key of a map, or None for an array
        found: tuple[str, str] | None = None
        values = 0  # top-level values
        records_at_top = True
        try:
            for event, value in ijson.basic_parse(f, multiple_values=True):
                if event in ("start_map", "start_array"):
                    if not stack:
                        values += 1
                        records_at_top = records_at_top and event == "start_map"
                    if len(stack) >= MAX_DEPTH:
                        raise RefusedFile(path, f"nested deeper than {MAX_DEPTH} levels")
                    stack.append("" if event == "start_map" else None)
                elif event in ("end_map", "end_array"):
                    stack.pop()
                elif event == "map_key":
                    stack[-1] = value
                    if value == RECORD_KEY and found is None:
                        found = _locate(stack)
                elif not stack:
                    values += 1
                    records_at_top = False
        except ijson.JSONError as error:
            raise RefusedFile(path, f"not valid JSON near byte {f.tell()}: {_first_line(error)}") from None
        except UnicodeDecodeError as error:
            raise RefusedFile(path, f"not UTF-8 text near byte {f.tell()}: {error.reason}") from None
    if found is None:
        raise UnknownShape(path, f"no record with a '{RECORD_KEY}' field found")
    kind, prefix = found
    if values > 1 and not (kind == "jsonl" and records_at_top):
        raise RefusedFile(path, f"{values} JSON values in one file; JSON Lines must hold one record object per line")
    return FileShape(kind, prefix, bom)


def _locate(stack: list[object]) -> tuple[str, str]:
    """Where the records are, from the open containers when the first record key is met
    (the record itself is the innermost map)."""
    if len(stack) == 1:
        return "jsonl", ""
    parents = stack[:-1]
    names = ["item" if key is None else str(key) for key in parents]
    if parents[-1] is None:  # the record is an element of an array
        return "items", ".".join(names)
    return "kvitems", ".".join(names[:-1])  # the record is a value of a map keyed by id


def _first_line(error: Exception) -> str:
    """ijson's messages span lines (and may come as bytes): the first line, as text."""
    message = error.args[0] if error.args else ""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    lines = str(message).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__


_DECODER = json.JSONDecoder()
_SKIP = re.compile(r"[\s,]*")


def _array_records(path: Path, chunk_size: int = 1 << 20) -> Iterator[object]:
    """Top-level JSON array, decoded record by record with the C decoder over a sliding buffer
    (several times faster than an event parser, and still never the whole file in memory).
    Only for files `inspect` has passed, so the structure is known to be sound."""
    with path.open(encoding="utf-8-sig") as f:
        buffer = f.read(chunk_size).lstrip()
        if not buffer.startswith("["):
            raise UnknownShape(path, "expected a JSON array")
        position, at_end = 1, False
        while True:
            position = _SKIP.match(buffer, position).end()
            if position < len(buffer) and buffer[position] == "]":
                return
            try:
                record, end = _DECODER.raw_decode(buffer, position)
            except (ValueError, RecursionError) as error:
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


def _raw_records(path: Path, shape: FileShape | None = None) -> Iterator[object]:
    shape = shape or inspect(path)
    if shape.kind == "items" and shape.prefix == "item":
        yield from _array_records(path)
        return
    with path.open("rb") as f:
        f.seek(len(UTF8_BOM) if shape.bom else 0)
        if shape.kind == "jsonl":
            yield from ijson.items(f, "", multiple_values=True, use_float=True)
        elif shape.kind == "items":
            yield from ijson.items(f, shape.prefix, use_float=True)
        else:
            for _key, value in ijson.kvitems(f, shape.prefix, use_float=True):
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
        number = int(value)
    else:
        text = str(value).strip()
        if len(text) > 20:
            raise ValueError("id too long")
        number = int(text)
    return _in_range(number)


def _in_range(number: int) -> int:
    if not 0 <= number <= MAX_ID:
        raise ValueError(f"id {number} out of range")
    return number


def sticker_path_problem(relative: str) -> str | None:
    """Why a sticker path may not be used, or None: it must be a relative path that stays inside
    the sticker folder, of reasonable length, with no control characters."""
    if len(relative) > MAX_PATH_CHARS:
        return f"sticker path longer than {MAX_PATH_CHARS} characters"
    if _CONTROLS.search(relative) or "\n" in relative or "\r" in relative or "\t" in relative:
        return "control characters in the sticker path"
    if _SURROGATES.search(relative):
        return "a broken character (lone surrogate) in the sticker path"
    if "\\" in relative:
        return "backslashes in the sticker path"
    pure = PurePosixPath(relative)
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", relative):
        return "absolute sticker path"
    if any(part in ("..", "") for part in relative.split("/")[:-1]) or pure.name in ("", ".", ".."):
        return "sticker path leaves the sticker folder"
    return None


def read_conversation(path: Path, on_malformed=None, shape: FileShape | None = None) -> Iterator[ChatMessage]:
    """Yield the messages of one conversation file in file order (`shape`: what `inspect` found,
    when it has already been called; a file it refuses raises RefusedFile).

    A malformed record is passed to ``on_malformed(MalformedRecord)``; without a callback it raises.
    """
    conversation = path.name
    for index, raw in enumerate(_raw_records(path, shape)):
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
            else:
                _in_range(message_id)
            reply_id = raw.get("reply_id")
            if reply_id is not None:
                reply_id = _as_int(reply_id) if type(reply_id) is not int else _in_range(reply_id)
            sticker = raw.get("sticker") or None
            if sticker is not None:
                if type(sticker) is not str:
                    raise ValueError("'sticker' is not a path")
                problem = sticker_path_problem(sticker)
                if problem:
                    raise ValueError(problem)
            text = raw.get("text") or ""
            if type(text) is not str:
                if isinstance(text, dict | list):
                    raise ValueError("'text' is not a string")
                text = str(text)
            if len(text) > MAX_TEXT_CHARS:
                raise ValueError(f"'text' longer than {MAX_TEXT_CHARS} characters")
            if _CONTROLS.search(text):
                text = _CONTROLS.sub("", text)
            if _SURROGATES.search(text):  # a lone surrogate is not text, nor can it be stored
                text = _SURROGATES.sub("\ufffd", text)
            from_id = raw.get("from_id")
            from_id = "" if from_id is None else str(from_id)
            if len(from_id) > 64 or isinstance(raw.get("from_id"), dict | list):
                raise ValueError("'from_id' is not an id")
            yield ChatMessage(conversation, message_id, from_id, reply_id, sticker, text)
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
