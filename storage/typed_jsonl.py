"""JSON Lines that readers inferring types from the first rows read whole, with no options.

polars.read_ndjson types each column from the first 100 lines: a column that is null (or an empty list)
in all of them becomes NULL-typed, and a later value either fails the read ("got non-null value for
NULL-typed column") or is silently turned into nulls. JSON has no place for a schema, so the file itself
must type every column early: `TypedJsonLines` writes records as they come, notes for each field the
first line where it has a value, and at close moves those few lines (at most one per field) to the top
when they came later than the first `head` lines. The records are the same, the order of a few differs.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

INFER_ROWS = 100  # polars' default infer_schema_length
_HEAD = INFER_ROWS // 2  # lines already this early stay where they are: moved ones go before them


def _typed(value) -> bool:
    """A value a reader can take the column's type from: not null, not an empty list."""
    if value is None:
        return False
    if isinstance(value, (list, tuple)):
        return bool(value) and all(_typed(v) for v in value[:1])
    return True


class TypedJsonLines:
    """Like storage.export_files.JsonLines (rows counted, orjson, naive times as UTC)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.body_path = self.path.with_name(self.path.name + ".body")
        self.file = self.body_path.open("wb", buffering=1 << 20)
        self.rows = 0
        self.offset = 0
        self.untyped: set[str] | None = None  # fields without a value so far
        self.late: dict[int, tuple[int, bytes]] = {}  # line number -> (byte offset, line), for lines to move

    def write(self, record: dict) -> None:
        line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NAIVE_UTC)
        if self.untyped is None:
            self.untyped = set(record)
        if self.untyped:
            typed = [name for name in self.untyped if _typed(record.get(name))]
            if typed:
                self.untyped.difference_update(typed)
                if self.rows >= _HEAD:
                    self.late[self.rows] = (self.offset, line)
        self.file.write(line)
        self.offset += len(line)
        self.rows += 1

    def write_many(self, records: list[dict]) -> None:
        """Like write() for each, with less work per record once every field has been typed."""
        if self.untyped is None or self.untyped:
            for record in records:
                self.write(record)
            return
        # Each line written as it is made: holding a batch of orjson's outputs to join them costs ~8x (its
        # buffers are sized for the worst case and shrunk only when they are freed).
        option, dumps, write = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NAIVE_UTC, orjson.dumps, self.file.write
        offset = self.offset
        for record in records:
            offset += write(dumps(record, option=option))
        self.offset = offset
        self.rows += len(records)

    def close(self) -> None:
        if self.file.closed:
            return
        self.file.close()
        if not self.late:
            os.replace(self.body_path, self.path)
            return
        # The moved lines first, then the body without them: block copies between them.
        with self.path.open("wb") as out, self.body_path.open("rb") as body:
            for _, line in self.late.values():
                out.write(line)
            position = 0
            for offset, line in sorted(self.late.values()):
                _copy(body, out, offset - position)
                body.seek(len(line), os.SEEK_CUR)
                position = offset + len(line)
            _copy(body, out, None)
        self.body_path.unlink()


def _copy(source, target, length: int | None) -> None:
    block = 1 << 20
    while length is None or length > 0:
        data = source.read(block if length is None else min(block, length))
        if not data:
            return
        target.write(data)
        if length is not None:
            length -= len(data)
