"""U-Sticker import: stream the conversations, curate contexts, store stickers and contexts.

Idempotent: stickers are keyed by file name and contexts by (sticker, language), and both are
inserted with ON CONFLICT DO NOTHING, so importing the same folder twice adds nothing.

All or nothing: every file is inspected before anything is written (a file that cannot be read is
refused with `RefusedFile`), and the whole import is one transaction, so a stop at a malformed
record leaves the database as it was. A sticker file is used only when its path stays inside the
sticker folder and its content is the format its name says (magic bytes, then a decode).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from tqdm import tqdm

from core.curation import FileCuration, curate_conversation, detect_language
from core.vocabulary import LANGUAGES
from storage.db import insert_ignoring_conflicts, session_scope
from storage.media_check import StickerFileError, check_sticker_file
from storage.models import ChatContext, ContextStatus, Sticker, utcnow
from storage.usticker import (
    conversation_files,
    inspect,
    read_domains,
    sticker_path_problem,
)

BATCH = 2000


class ImportStopped(Exception):
    pass


@dataclass
class ImportReport:
    files: int = 0
    messages: int = 0
    sticker_messages: int = 0
    stickers_seen: int = 0
    stickers_added: int = 0
    contexts_kept: int = 0
    contexts_added: int = 0
    removed: Counter = field(default_factory=Counter)
    languages: Counter = field(default_factory=Counter)
    malformed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"files": self.files, "messages": self.messages, "sticker_messages": self.sticker_messages,
                "stickers_seen": self.stickers_seen, "stickers_added": self.stickers_added,
                "contexts_kept": self.contexts_kept, "contexts_added": self.contexts_added,
                "removed_by_rule": dict(self.removed), "languages": dict(self.languages),
                "malformed": len(self.malformed)}


def _file_facts(sticker_root: Path | None, relative: str, fmt: str) -> tuple[str | None, int | None]:
    """sha256 and size of a sticker file that is present (None, None when it is not: the data may
    be imported before the sticker archive). Raises StickerFileError for a path that leaves the
    sticker folder or a file whose content is not the format its name says."""
    problem = sticker_path_problem(relative)
    if problem:
        raise StickerFileError(problem)
    if sticker_root is None:
        return None, None
    root = Path(sticker_root).resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise StickerFileError("the sticker path leads outside the sticker folder")
    if not path.exists():
        return None, None
    if not path.is_file():
        raise StickerFileError("the sticker path is not a file")
    check_sticker_file(path, fmt)
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest(), path.stat().st_size


class _Writer:
    """Buffers stickers and contexts and writes them in batches, all in one transaction that
    `commit` ends (an exception before it leaves nothing written)."""

    def __init__(self, db: Engine, report: ImportReport):
        self.db, self.report = db, report
        self.stickers: dict[str, dict] = {}
        self.contexts: list[tuple[str, dict]] = []
        self._scope = session_scope(db)
        self.session = self._scope.__enter__()

    def commit(self) -> None:
        self.flush()
        self._scope.__exit__(None, None, None)

    def abandon(self, error: BaseException) -> None:
        self._scope.__exit__(type(error), error, error.__traceback__)

    def sticker(self, row: dict) -> None:
        self.stickers.setdefault(row["key"], row)
        if len(self.stickers) >= BATCH:
            self.flush()

    def context(self, sticker_key: str, row: dict) -> None:
        self.contexts.append((sticker_key, row))
        if len(self.contexts) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.stickers and not self.contexts:
            return
        session = self.session
        self.report.stickers_added += insert_ignoring_conflicts(
            session, Sticker.__table__, list(self.stickers.values()), ["key"])
        keys = list({key for key, _ in self.contexts})
        ids = dict(session.exec(select(Sticker.key, Sticker.id).where(col(Sticker.key).in_(keys))).all()) \
            if keys else {}
        rows = [dict(row, sticker_id=ids[key]) for key, row in self.contexts]
        self.report.contexts_added += insert_ignoring_conflicts(
            session, ChatContext.__table__, rows, ["sticker_id", "language"])
        session.flush()
        self.stickers.clear()
        self.contexts.clear()


def import_usticker(
    db: Engine,
    folder: Path,
    *,
    sticker_root: Path | None = None,
    min_words: int = 20,
    stop_on_error: bool = False,
    approve: bool = False,
    progress: bool = True,
    workers: int | None = None,
    on_malformed: Callable[[str], None] | None = None,
) -> ImportReport:
    """Import every conversation file of a U-Sticker folder.

    Files are read and curated in parallel worker processes (`workers`, default: one per core, at
    most 4); language identification and the one-context-per-sticker rule run here, as results
    are merged in file order, so "the first use of a sticker wins" means the same as in a single
    pass and the outcome does not depend on the number of workers. The workers load only the
    reader and jieba, so each adds little memory.
    """
    folder = Path(folder)
    files = conversation_files(folder)
    if not files:
        raise FileNotFoundError(f"no conversation files (*.json, *.jsonl) in {folder}")
    domains = read_domains(folder / "idx_to_domain.txt")
    shapes = {}
    for path in tqdm(files, desc="check", unit=" file", disable=not progress):
        shapes[path] = inspect(path)  # raises RefusedFile before anything is written
    report = ImportReport()
    with Session(db) as session:
        kept = {(k, lang) for k, lang in session.exec(
            select(Sticker.key, ChatContext.language).join(ChatContext, ChatContext.sticker_id == Sticker.id))}
    seen_stickers: set[str] = set()
    status = ContextStatus.APPROVED if approve else ContextStatus.CANDIDATE
    if workers is None:  # worker processes only pay off once there is real work to share
        small = sum(p.stat().st_size for p in files) < 8 * 2**20
        workers = 1 if small else min(4, os.cpu_count() or 1)
    workers = max(1, min(workers, len(files)))

    def domain_of(path: Path) -> str | None:
        return domains.get(path.name) or domains.get(path.stem) or (
            domains.get(str(int(path.stem))) if path.stem.isdigit() else None)

    jobs = [(path, min_words, domain_of(path), stop_on_error, shapes[path]) for path in files]
    bar = tqdm(total=None, unit=" msg", unit_scale=True, disable=not progress, desc="import", mininterval=0.5)
    executor = None
    writer = _Writer(db, report)
    try:
        if workers > 1:
            executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            results = executor.map(curate_conversation, *zip(*jobs, strict=True))
        else:
            results = (curate_conversation(*job) for job in jobs)
        for curated in results:
            before = len(report.malformed)
            _merge(curated, report, writer, seen_stickers, kept, status, sticker_root, domains, domain_of)
            bar.update(curated.messages)
            for problem in report.malformed[before:]:
                if on_malformed is not None:
                    on_malformed(problem)
            stopped = curated.stopped or (stop_on_error and len(report.malformed) > before and report.malformed[-1])
            if stopped:
                raise ImportStopped(stopped)
        writer.commit()
    except BaseException as error:
        writer.abandon(error)
        raise
    finally:
        bar.close()
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    return report


def _merge(curated: FileCuration, report: ImportReport, writer: _Writer, seen_stickers: set[str],
           kept: set[tuple[str, str]], status: str, sticker_root: Path | None, domains: dict, domain_of) -> None:
    report.files += 1
    report.messages += curated.messages
    report.sticker_messages += curated.sticker_messages
    report.removed.update(curated.removed)
    report.malformed.extend(curated.malformed)
    domain = domain_of(Path(curated.name))
    now = utcnow()
    refused: set[str] = set()
    for key, path, fmt in curated.stickers:
        if key in seen_stickers:
            continue
        try:
            sha256, size = _file_facts(sticker_root, path, fmt)
        except StickerFileError as error:
            report.malformed.append(f"{curated.name}: sticker {path[:200]!r}: {error}")
            report.removed["unknown_format"] += 1
            refused.add(key)
            continue
        seen_stickers.add(key)
        report.stickers_seen += 1
        writer.sticker({"created_at": now, "key": key, "file_path": path, "format": fmt, "sha256": sha256,
                        "size_bytes": size, "domain": domains.get(key) or domain})
    for key, guess, text, row in curated.contexts:
        if key in refused or key not in seen_stickers:
            continue
        if (key, guess) in kept:  # an earlier file used this sticker first: no need to identify
            report.removed["duplicate_sticker"] += 1
            continue
        language = detect_language(text)
        report.languages[language if language in LANGUAGES else "other"] += 1
        if language not in LANGUAGES:
            report.removed["other_language"] += 1
            continue
        if (key, language) in kept:
            report.removed["duplicate_sticker"] += 1
            continue
        kept.add((key, language))
        report.contexts_kept += 1
        writer.context(key, dict(row, language=language, status=status, created_at=now))
