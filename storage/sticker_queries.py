"""The StickerQueries CSV format: ``sticker_id,labeled_queries``, queries joined by ", ".

Written with the standard CSV dialect and LF line endings, which reproduces the released files, but
for one thing: the zh release quotes 5 single-query rows (`"吃瓜"`) that need no quotes, and 3 like them
it does not. No rule tells them apart, so the reader says which rows a file quoted beyond need
(`read_release_rows`), the importer keeps that on the seeds, and the writer quotes those rows again.

Read strictly, in bounded memory: a file that is not UTF-8, a physical line over `MAX_LINE_CHARS`,
a field over the csv module's limit, a quote left open, a row that is not two fields, a sticker id
that is not a plain file name, a sticker listed twice or an empty query refuses the whole file with
one line naming the file, the line and the reason. (What a query may hold is the caller's check.)
"""

from __future__ import annotations

import csv
import io
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


def _lines(f, path: Path, where: list[int], raw: list[str]) -> Iterator[str]:
    """Physical lines, each read with a bound, so one endless line cannot fill the memory; each is
    also kept in `raw` until the caller has seen the row it belongs to."""
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
        raw.append(line)
        yield line


def read_sticker_queries(path: Path) -> Iterator[tuple[str, list[str]]]:
    for sticker_id, queries, _ in read_release_rows(path):
        yield sticker_id, queries


def _render(sticker_id: str, joined: str, *, quoted: bool) -> str:
    if quoted:
        return f'{sticker_id},"{joined.replace(chr(34), chr(34) * 2)}"\n'
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow((sticker_id, joined))
    return out.getvalue()


def read_release_rows(path: Path) -> Iterator[tuple[str, list[str], bool]]:
    """(sticker_id, queries, quoted): `quoted` when the row quoted its field though the standard
    dialect would not have (the writer's `quoted`)."""
    path = Path(path)
    with path.open("rb") as raw:
        head = raw.read(4)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in head:
        raise StickerQueriesFormatError(f"{path}: the file is UTF-16 or binary; save it as UTF-8")
    where = [0]  # physical lines read so far
    raw: list[str] = []  # the physical lines of the row being read
    seen: set[str] = set()
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(_lines(f, path, where, raw), strict=True)
        try:
            header = next(reader, None)
            raw.clear()
            if header is None or tuple(h.strip().lstrip("\ufeff") for h in header) != HEADER:
                shown = repr(header)[:120] if header is not None else "an empty file"
                raise StickerQueriesFormatError(f"{path}: expected the header 'sticker_id,labeled_queries', "
                                                f"got {shown}")
            for row in reader:
                line = where[0]
                text = "".join(raw)
                raw.clear()
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
                minimal = _render(sticker_id, joined, quoted=False)
                yield sticker_id, queries, text != minimal and text == _render(sticker_id, joined, quoted=True)
        except csv.Error as error:
            raise StickerQueriesFormatError(f"{path}, line {where[0]}: {error} (a quote left open?)") from None


class StickerQueriesWriter:
    """Rows written one at a time (already in release order), for writers that stream."""

    def __init__(self, path: Path) -> None:
        self.file = Path(path).open("w", encoding="utf-8", newline="")
        self.writer = csv.writer(self.file, lineterminator="\n")
        self.writer.writerow(HEADER)
        self.rows = 0

    def write(self, sticker_id: str, queries: Iterable[str], *, quoted: bool = False) -> None:
        """`quoted`: quote the queries' field even where it needs no quotes (as a release row did)."""
        if quoted:
            self.file.write(_render(sticker_id, SEPARATOR.join(queries), quoted=True))
        else:
            self.writer.writerow((sticker_id, SEPARATOR.join(queries)))
        self.rows += 1

    def close(self) -> None:
        self.file.close()


def write_sticker_queries(path: Path, rows: Iterable[tuple]) -> int:
    """Write rows (already in release order): (sticker_id, queries) or (sticker_id, queries, quoted);
    returns the number of rows written."""
    writer = StickerQueriesWriter(path)
    try:
        for sticker_id, queries, *quoted in rows:
            writer.write(sticker_id, queries, quoted=bool(quoted and quoted[0]))
    finally:
        writer.close()
    return writer.rows
