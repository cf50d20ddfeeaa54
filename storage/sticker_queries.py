"""The StickerQueries CSV format: ``sticker_id,labeled_queries``, queries joined by ", ".

Written with the standard CSV dialect and LF line endings, which reproduces the released files.

Read strictly, in bounded memory: a file that is not UTF-8, a physical line over `MAX_LINE_CHARS`,
a field over the csv module's limit, a quote left open, a row that is not two fields, a sticker id
that is not a plain file name, a sticker listed twice or an empty query refuses the whole file with
one line naming the file, the line and the reason. (What a query may hold is the caller's check.)
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

HEADER = ("sticker_id", "labeled_queries")
SEPARATOR = ", "
MAX_LINE_CHARS = 256 * 1024
# A sticker id names a file in the sticker folder: no path, no hidden or odd names.
STICKER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class StickerQueriesFormatError(ValueError):
    pass


def _lines(f, path: Path, where: list[int]) -> Iterator[str]:
    """Physical lines, each read with a bound, so one endless line cannot fill the memory."""
    while True:
        try:
            line = f.readline(MAX_LINE_CHARS + 1)
        except UnicodeDecodeError as error:
            raise StickerQueriesFormatError(f"{path}, line {where[0] + 1}: not UTF-8 text ({error.reason})") from None
        if not line:
            return
        if len(line) > MAX_LINE_CHARS:
            raise StickerQueriesFormatError(f"{path}, line {where[0] + 1}: a line over {MAX_LINE_CHARS} characters")
        where[0] += 1
        yield line


def read_sticker_queries(path: Path) -> Iterator[tuple[str, list[str]]]:
    path = Path(path)
    with path.open("rb") as raw:
        head = raw.read(4)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in head:
        raise StickerQueriesFormatError(f"{path}: the file is UTF-16 or binary; save it as UTF-8")
    where = [0]  # physical lines read so far
    seen: set[str] = set()
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(_lines(f, path, where), strict=True)
        try:
            header = next(reader, None)
            if header is None or tuple(h.strip().lstrip("\ufeff") for h in header) != HEADER:
                shown = repr(header)[:120] if header is not None else "an empty file"
                raise StickerQueriesFormatError(f"{path}: expected the header 'sticker_id,labeled_queries', "
                                                f"got {shown}")
            for row in reader:
                line = where[0]
                if not row:
                    continue
                if len(row) != 2 or not row[0]:
                    raise StickerQueriesFormatError(f"{path}, line {line}: expected 2 fields, got {len(row)}")
                sticker_id, joined = row
                if not STICKER_ID.fullmatch(sticker_id):
                    raise StickerQueriesFormatError(
                        f"{path}, line {line}: {sticker_id[:80]!r} is not a sticker file name")
                if sticker_id in seen:
                    raise StickerQueriesFormatError(f"{path}, line {line}: sticker {sticker_id} is listed twice")
                seen.add(sticker_id)
                queries = joined.split(SEPARATOR)
                if any(not q.strip() for q in queries):
                    raise StickerQueriesFormatError(f"{path}, line {line}: an empty query (sticker {sticker_id})")
                yield sticker_id, queries
        except csv.Error as error:
            raise StickerQueriesFormatError(f"{path}, line {where[0]}: {error} (a quote left open?)") from None


class StickerQueriesWriter:
    """Rows written one at a time (already in release order), for writers that stream."""

    def __init__(self, path: Path) -> None:
        self.file = Path(path).open("w", encoding="utf-8", newline="")
        self.writer = csv.writer(self.file, lineterminator="\n")
        self.writer.writerow(HEADER)
        self.rows = 0

    def write(self, sticker_id: str, queries: Iterable[str]) -> None:
        self.writer.writerow((sticker_id, SEPARATOR.join(queries)))
        self.rows += 1

    def close(self) -> None:
        self.file.close()


def write_sticker_queries(path: Path, rows: Iterable[tuple[str, list[str]]]) -> int:
    """Write rows (already in release order); returns the number of rows written."""
    writer = StickerQueriesWriter(path)
    try:
        for sticker_id, queries in rows:
            writer.write(sticker_id, queries)
    finally:
        writer.close()
    return writer.rows
