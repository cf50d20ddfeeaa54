"""Export folders on disk: written under a hidden temporary name, renamed only when complete.

Layout of the export root::

    2026-11-27T030000Z/      one complete export (it has a manifest.json)
    2026-11-28T030000Z/
    latest -> 2026-11-28T030000Z
    .partial-…/              an export being written (or left by a killed run): never listed

Readers (the pull server, the pull client, retention) only ever see complete folders.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from storage.arrow_columns import column

MANIFEST = "manifest.json"
LATEST = "latest"
PARTIAL_PREFIX = ".partial-"
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{6}Z(?:-\d+)?$")


def version_name(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H%M%SZ")


def is_version_name(name: str) -> bool:
    return bool(_VERSION.match(name))


def list_exports(root: Path) -> list[str]:
    """Complete exports, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.is_symlink() and is_version_name(p.name) and (p / MANIFEST).is_file())


def latest_export(root: Path) -> str | None:
    link = Path(root) / LATEST
    if link.is_symlink():
        name = os.readlink(link)
        if is_version_name(name) and (Path(root) / name / MANIFEST).is_file():
            return name
    versions = list_exports(root)
    return versions[-1] if versions else None


class ExportFolder:
    """`with ExportFolder(root, moment) as folder:` write into `folder`; on success it becomes
    `root/<version>` and `latest` points at it; on any error nothing of it stays."""

    def __init__(self, root: Path, moment: datetime) -> None:
        self.root = Path(root)
        base = version_name(moment)
        self.version, n = base, 1
        while (self.root / self.version).exists():
            n += 1
            self.version = f"{base}-{n}"
        self.partial = self.root / f"{PARTIAL_PREFIX}{self.version}-{os.getpid()}"

    def __enter__(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        remove_partials(self.root)
        self.partial.mkdir()
        return self.partial

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.partial, ignore_errors=True)
            return
        final = self.root / self.version
        os.rename(self.partial, final)
        _fsync_dir(self.root)
        point_latest(self.root, self.version)


def point_latest(root: Path, version: str) -> None:
    """Swap the `latest` symlink atomically (a reader sees the old or the new one, never none)."""
    link = Path(root) / LATEST
    staging = Path(root) / f"{PARTIAL_PREFIX}latest-{os.getpid()}"
    staging.unlink(missing_ok=True)
    os.symlink(version, staging)
    os.replace(staging, link)


def remove_partials(root: Path) -> list[str]:
    """Leftovers of interrupted exports. Exports run one at a time (the job lock), so any is stale."""
    removed = []
    for path in Path(root).glob(f"{PARTIAL_PREFIX}*"):
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed


def apply_retention(root: Path, keep: int) -> list[str]:
    """Delete all but the newest `keep` exports (never the one `latest` points at)."""
    versions = list_exports(root)
    latest = latest_export(root)
    doomed = [v for v in versions[:-keep] if v != latest] if keep > 0 else [v for v in versions if v != latest]
    for version in doomed:
        # Renamed first so a reader never sees a half-deleted export.
        trash = Path(root) / f"{PARTIAL_PREFIX}deleting-{version}"
        os.rename(Path(root) / version, trash)
        shutil.rmtree(trash, ignore_errors=True)
    return doomed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    return sha256_and_lines(path)[0]


def sha256_and_lines(path: Path) -> tuple[str, int]:
    """The file's sha256 and its number of newlines, in one read."""
    digest, lines = hashlib.sha256(), 0
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            lines += block.count(b"\n")
    return digest.hexdigest(), lines


def read_manifest(folder: Path) -> dict:
    return json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))


_batch_lock = threading.Lock()
_batch_depth = 0
_batch_restore: tuple[tuple[int, int, int], bool] | None = None


@contextmanager
def batch_heap() -> Iterator[None]:
    """The cyclic garbage collector set for a batch that makes millions of short-lived objects and few
    cycles (reference counting frees them): what exists when it starts (modules, settings, caches) is
    frozen out of the collector's passes, and young objects are collected less often. On the export
    bench (a million queries) the collector's passes had cost a fifth of the time.

    Safe in a shared process: a heap someone else froze (the bots' start-up heap, bots/startup.py) is
    left frozen, since unfreezing is all or nothing; overlapping batches in several threads set and
    restore once, the first in and the last out."""
    global _batch_depth, _batch_restore
    with _batch_lock:
        if _batch_depth == 0:
            threshold = gc.get_threshold()
            freeze = gc.get_freeze_count() == 0
            if freeze:
                gc.freeze()
            gc.set_threshold(max(threshold[0], 10_000), *threshold[1:])
            _batch_restore = (threshold, freeze)
        _batch_depth += 1
    try:
        yield
    finally:
        with _batch_lock:
            _batch_depth -= 1
            if _batch_depth == 0 and _batch_restore is not None:
                threshold, froze = _batch_restore
                gc.set_threshold(*threshold)
                if froze:
                    gc.unfreeze()
                _batch_restore = None


def write_json(path: Path, value) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


class JsonLines:
    """A JSON Lines file written one record at a time; counts its rows."""

    def __init__(self, path: Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.file = Path(path).open("wb", buffering=1 << 20)
        self.rows = 0

    def write(self, record: dict) -> None:
        # orjson: UTF-8 as is (no \u escapes), compact, several times faster than json.dumps, and
        # times in ISO 8601 (a naive time is UTC, as the database stores it).
        self.file.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NAIVE_UTC))
        self.rows += 1

    def close(self) -> None:
        self.file.close()


class Tsv:
    def __init__(self, path: Path, header: Iterable[str]) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.file = Path(path).open("w", encoding="utf-8", newline="\n")
        self.file.write("\t".join(header) + "\n")
        self.rows = 0

    def write(self, *fields) -> None:
        self.file.write("\t".join(map(str, fields)) + "\n")
        self.rows += 1

    def close(self) -> None:
        self.file.close()


class ParquetRecords:
    """Rows (tuples in schema order) buffered and written as one row group per batch: memory stays flat."""

    def __init__(self, path: Path, schema: pa.Schema, batch_rows: int = 10_000,
                 on_flush: Callable[[pa.Table], None] | None = None) -> None:
        """`on_flush` sees every batch as an Arrow table once written (to derive other files from it)."""
        self.schema = schema
        self.on_flush = on_flush
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.writer = pq.ParquetWriter(str(path), schema, compression="zstd")
        self.batch_rows = batch_rows
        self.buffer: list[tuple] = []
        self.tables: list[pa.Table] = []  # batches given in columns, waiting to fill a row group
        self.table_rows = 0
        self.rows = 0

    def write(self, values: tuple) -> None:
        self.buffer.append(values)
        if len(self.buffer) >= self.batch_rows:
            self.flush()

    def write_table(self, table: pa.Table) -> None:
        """A batch already in columns, after the rows buffered so far; small batches are gathered into
        row groups of `batch_rows` (a reader pays per row group)."""
        if self.buffer:
            self.flush()
        if table.num_rows:
            self.tables.append(table)
            self.table_rows += table.num_rows
            if self.table_rows >= self.batch_rows:
                self._write_tables()

    def _write_tables(self) -> None:
        if not self.tables:
            return
        table = pa.concat_tables(self.tables)
        self.tables, self.table_rows = [], 0
        self.writer.write_table(table)
        if self.on_flush is not None:
            self.on_flush(table)
        self.rows += table.num_rows

    def write_many(self, rows: list[tuple]) -> None:
        self.buffer.extend(rows)
        if len(self.buffer) >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        self._write_tables()  # they came before any row now buffered (write_table flushes the rows first)
        if not self.buffer:
            return
        columns = [column(values, field.type) for values, field in zip(zip(*self.buffer, strict=True), self.schema,
                                                                       strict=True)]
        table = pa.Table.from_arrays(columns, schema=self.schema)
        self.writer.write_table(table)
        if self.on_flush is not None:
            self.on_flush(table)
        self.rows += len(self.buffer)
        self.buffer = []

    def close(self) -> None:
        self.flush()
        self.writer.close()
