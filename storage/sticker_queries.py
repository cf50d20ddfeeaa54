"""The StickerQueries CSV format: ``sticker_id,labeled_queries``, queries joined by ", ".

Written with the standard CSV dialect and LF line endings, which reproduces the released files.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path

HEADER = ("sticker_id", "labeled_queries")
SEPARATOR = ", "


class StickerQueriesFormatError(ValueError):
    pass


def read_sticker_queries(path: Path) -> Iterator[tuple[str, list[str]]]:
    with Path(path).open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip().lstrip("\ufeff") for h in header) != HEADER:
            raise StickerQueriesFormatError(f"{path}: expected the header 'sticker_id,labeled_queries', got {header}")
        for line_number, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 2 or not row[0]:
                raise StickerQueriesFormatError(f"{path}, line {line_number}: expected 2 fields, got {len(row)}")
            yield row[0], [q for q in row[1].split(SEPARATOR) if q != ""]


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
