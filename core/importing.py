"""U-Sticker import: stream the conversations, curate contexts, store stickers and contexts.

Idempotent: stickers are keyed by file name and contexts by (sticker, language), and both are
inserted with ON CONFLICT DO NOTHING, so importing the same folder twice adds nothing.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from tqdm import tqdm

from core.curation import (
    CONTEXT_MESSAGES,
    GAME_LANGUAGES,
    WindowMessage,
    anonymised,
    detect_language,
    dialogue_before,
    is_brief_reply_stretch,
    is_command_driven,
    script_guess,
)
from storage.db import insert_ignoring_conflicts, session_scope
from storage.models import ChatContext, ContextStatus, Sticker, utcnow
from storage.usticker import (
    MalformedRecord,
    conversation_files,
    read_conversation,
    read_domains,
    sticker_format,
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


def _file_facts(sticker_root: Path | None, relative: str) -> tuple[str | None, int | None]:
    if sticker_root is None:
        return None, None
    path = sticker_root / relative
    if not path.is_file():
        return None, None
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest(), path.stat().st_size


class _Writer:
    """Buffers stickers and contexts and writes them in batches."""

    def __init__(self, db: Engine, report: ImportReport, approve: bool):
        self.db, self.report, self.approve = db, report, approve
        self.stickers: dict[str, dict] = {}
        self.contexts: list[tuple[str, dict]] = []

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
        with session_scope(self.db) as session:
            self.report.stickers_added += insert_ignoring_conflicts(
                session, Sticker.__table__, list(self.stickers.values()), ["key"])
            keys = list({key for key, _ in self.contexts})
            ids = dict(session.exec(select(Sticker.key, Sticker.id).where(col(Sticker.key).in_(keys))).all()) \
                if keys else {}
            rows = [dict(row, sticker_id=ids[key]) for key, row in self.contexts]
            self.report.contexts_added += insert_ignoring_conflicts(
                session, ChatContext.__table__, rows, ["sticker_id", "language"])
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
    on_malformed: Callable[[MalformedRecord], None] | None = None,
) -> ImportReport:
    folder = Path(folder)
    files = conversation_files(folder)
    if not files:
        raise FileNotFoundError(f"no conversation files (*.json, *.jsonl) in {folder}")
    domains = read_domains(folder / "idx_to_domain.txt")
    report = ImportReport()
    writer = _Writer(db, report, approve)
    with Session(db) as session:
        existing_contexts = {(k, lang) for k, lang in session.exec(
            select(Sticker.key, ChatContext.language).join(ChatContext, ChatContext.sticker_id == Sticker.id))}
    seen_stickers: set[str] = set()
    kept_stickers: set[tuple[str, str]] = set(existing_contexts)
    status = ContextStatus.APPROVED if approve else ContextStatus.CANDIDATE

    def malformed(problem: MalformedRecord) -> None:
        report.malformed.append(str(problem))
        if on_malformed is not None:
            on_malformed(problem)
        if stop_on_error:
            raise ImportStopped(str(problem))

    bar = tqdm(total=None, unit=" msg", unit_scale=True, disable=not progress, desc="import", mininterval=0.5)
    try:
        for path in files:
            report.files += 1
            domain = domains.get(path.name) or domains.get(path.stem) or domains.get(str(int(path.stem))
                                                                                     if path.stem.isdigit() else "")
            window: deque[WindowMessage] = deque(maxlen=CONTEXT_MESSAGES)
            pending = 0
            for message in read_conversation(path, on_malformed=malformed):
                report.messages += 1
                pending += 1
                if pending == 5000:
                    bar.update(pending)
                    pending = 0
                if message.sticker is None:
                    window.append(WindowMessage(message.message_id, message.from_id, message.text, False,
                                                message.reply_id))
                    continue
                _consider_sticker(message, window, domain, min_words, report, writer, seen_stickers,
                                  kept_stickers, status, sticker_root, domains)
                window.append(WindowMessage(message.message_id, message.from_id, "", True, message.reply_id))
            bar.update(pending)
        writer.flush()
    finally:
        bar.close()
    return report


def _consider_sticker(message, window, domain, min_words, report, writer, seen_stickers, kept_stickers,
                      status, sticker_root, domains) -> None:
    report.sticker_messages += 1
    key = Path(message.sticker).name
    fmt = sticker_format(key)
    if fmt is None:
        report.removed["unknown_format"] += 1
        return
    if key not in seen_stickers:
        seen_stickers.add(key)
        report.stickers_seen += 1
        sha256, size = _file_facts(sticker_root, message.sticker)
        writer.sticker({"created_at": utcnow(), "key": key, "file_path": message.sticker, "format": fmt, "sha256": sha256,
                        "size_bytes": size, "domain": domains.get(key) or domain})
    context = dialogue_before(window, min_words)
    if context is None:
        report.removed["too_little_dialogue"] += 1
        return
    if is_command_driven(context, message.reply_id):
        report.removed["command_driven"] += 1
        return
    if is_brief_reply_stretch(context):
        report.removed["brief_replies"] += 1
        return
    text = " ".join(m.text for m in context if not m.is_sticker)
    if (key, script_guess(text)) in kept_stickers:
        report.removed["duplicate_sticker"] += 1
        return
    language = detect_language(text)
    report.languages[language if language in GAME_LANGUAGES else "other"] += 1
    if language not in GAME_LANGUAGES:
        report.removed["other_language"] += 1
        return
    if (key, language) in kept_stickers:
        report.removed["duplicate_sticker"] += 1
        return
    kept_stickers.add((key, language))
    report.contexts_kept += 1
    writer.context(key, {
        "conversation": message.conversation, "message_id": message.message_id,
        "messages": anonymised(context, message.from_id), "language": language, "domain": domain,
        "word_count": sum(m.words for m in context), "status": status, "priority": 0,
        "label_count": 0, "skip_count": 0, "created_at": utcnow(),
    })
