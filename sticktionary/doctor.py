"""`sticktionary doctor`: is this set-up ready to run? One finding per check, each with what to do.

Checks, in order: the settings parse; the database answers and is at the newest migration; Redis
answers (when configured); each bot's token (`getMe`) and the webhook Telegram holds for it
(`getWebhookInfo`, against STICKTIONARY_WEBHOOK_URL), both through STICKTIONARY_TELEGRAM_API, so a
local Bot API or the sandbox is checked the same way; the sticker folder (readable, how many files,
whether the database's stickers are there); the export folder (writable: a file is written and
removed); free disk under each folder; dead letters in the outbox; stickers each bot has no Telegram
file id for yet, and of those the ones inline search leaves out until they are uploaded.

A check that cannot run because an earlier one failed (no database: no outbox to look at) is reported
as `skip`. Nothing here changes the set-up, except the test file written to, and removed from, the
export folder. Every line passes through the log's redacting filter: no token or password is shown.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from sticktionary.doctor_bot_api import bot_api, one_line
from storage.settings import Settings, SettingsProblem, load_settings

HTTP_TIMEOUT = 10.0  # seconds for each Bot API call
DB_CONNECT_TIMEOUT = 5  # seconds for PostgreSQL to answer
# Free disk: below these a folder's file system is a failure or a warning. An export of a million
# queries takes about 1 GB, and PostgreSQL or SQLite needs room to grow.
FREE_FAIL_BYTES = 512 * 2**20
FREE_WARN_BYTES = 5 * 2**30
FREE_WARN_SHARE = 0.05


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"  # could not be checked because an earlier check failed


@dataclass
class Finding:
    check: str
    status: Status
    detail: str
    fix: str | None = None

    def line(self) -> str:
        return f"{self.status.value:<4} {self.check}: {self.detail}" + (f" -> {self.fix}" if self.fix else "")

    def as_dict(self) -> dict:
        return {**asdict(self), "status": self.status.value}


def healthy(findings: list[Finding]) -> bool:
    return not any(f.status == Status.FAIL for f in findings)


def examine(settings: Settings | None = None) -> list[Finding]:
    """Every check's finding; `settings` None: read them from the environment / .env."""
    if settings is None:
        try:
            settings = load_settings()
        except SettingsProblem as problem:
            return [Finding("settings", Status.FAIL, str(problem),
                            "fix that variable in the environment or .env (.env.example lists every setting)")]
    return Examination(settings).run()


class Examination:
    """The checks against one set of settings; each check method appends its findings."""

    def __init__(self, settings: Settings):
        from sticktionary.logs import RedactingFilter

        self.settings = settings
        self.findings: list[Finding] = []
        self.engine = None  # set once the database answers and is at the newest migration
        self.sticker_folder_ok = False
        self.bot_ids: dict[str, bool] = {}  # bot key -> its token answered getMe
        secrets = settings.secrets()
        with contextlib.suppress(Exception):
            from sqlalchemy.engine import make_url

            password = make_url(settings.storage.database_url).password
            if password:
                secrets.append(str(password))
        with contextlib.suppress(Exception):
            if settings.telegram.redis_url and urlsplit(settings.telegram.redis_url).password:
                secrets.append(urlsplit(settings.telegram.redis_url).password)
        self._redactor = RedactingFilter(secrets)

    CHECKS = ("settings", "database", "redis", "bots", "sticker_folder", "export_folder", "free_disk", "outbox",
              "file_ids", "inline")

    def run(self) -> list[Finding]:
        try:
            for name in self.CHECKS:
                try:
                    getattr(self, f"check_{name}")()
                except Exception as error:  # noqa: BLE001 - a check that breaks is a finding, not a traceback
                    self.add(name.replace("_", " "), Status.FAIL, f"the check itself failed: {one_line(error)}",
                             "report this with the line above")
        finally:
            if self.engine is not None:
                self.engine.dispose()
        return [Finding(f.check, f.status, self._redactor.redact(f.detail),
                        self._redactor.redact(f.fix) if f.fix else None) for f in self.findings]

    def add(self, check: str, status: Status, detail: str, fix: str | None = None) -> None:
        self.findings.append(Finding(check, status, detail, fix))

    # ------------------------------------------------------------------ settings
    def check_settings(self) -> None:
        s = self.settings
        mode = "webhook" if s.telegram.webhook_url else "long polling"
        self.add("settings", Status.OK, f"{len(s.telegram.bots)} bot(s) by {mode}, "
                                        f"{len(s.telegram.moderators)} moderator(s), Bot API {s.telegram.telegram_api}")
        if s.telegram.webhook_url and not s.telegram.webhook_secret:
            self.add("webhook secret", Status.FAIL, "STICKTIONARY_WEBHOOK_URL is set but STICKTIONARY_WEBHOOK_SECRET "
                     "is not (`sticktionary run` refuses to start)", "set STICKTIONARY_WEBHOOK_SECRET to a long random "
                     "string")
        keys = [bot.key for bot in s.telegram.bots]
        if len(set(keys)) != len(keys):
            self.add("bot names", Status.FAIL, "two bots in STICKTIONARY_BOTS have the same name (or token number)",
                     'give each a different "name"')
        if s.telegram.bots and not s.telegram.moderators:
            self.add("moderators", Status.WARN, "STICKTIONARY_MODERATORS is empty: missed rounds wait for a review "
                     "nobody can give", "put the moderators' Telegram user ids there")
        from core.pseudonyms import HOW_TO_MAKE, key_problem

        problem = key_problem(s.privacy.pseudonym_key)
        if problem:
            self.add("pseudonym key", Status.WARN, problem.split(";")[0] + ": exports refuse it", HOW_TO_MAKE)

    # ------------------------------------------------------------------ database
    def check_database(self) -> None:
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory
        from sqlalchemy import text
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        from storage.db import make_engine
        from storage.migrate import alembic_config

        try:
            url = make_url(self.settings.storage.database_url)
        except ArgumentError:
            self.add("database", Status.FAIL, "STICKTIONARY_DATABASE_URL is not a database URL",
                     f"use e.g. sqlite:///var/sticktionary.sqlite3 or {_example('database_url')}")
            return
        shown = url.render_as_string(hide_password=True)
        backend = url.get_backend_name()
        if backend == "sqlite":
            path = url.database
            if path and path != ":memory:" and not Path(path).is_file():
                self.add("database", Status.FAIL, f"no database file at {path}",
                         "run `sticktionary db upgrade` (or fix STICKTIONARY_DATABASE_URL)")
                return
        elif backend == "postgresql" and "connect_timeout" not in url.query:
            url = url.update_query_dict({"connect_timeout": str(DB_CONNECT_TIMEOUT)})
        engine = make_engine(url.render_as_string(hide_password=False))
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                current = set(MigrationContext.configure(connection).get_current_heads())
        except Exception as error:  # noqa: BLE001 - any failure to talk to it is the finding
            engine.dispose()
            self.add("database", Status.FAIL, f"{shown} does not answer: {one_line(error)}",
                     "check STICKTIONARY_DATABASE_URL and that the database server runs and lets this user in")
            return
        script = ScriptDirectory.from_config(alembic_config(self.settings.storage.database_url))
        heads = set(script.get_heads())
        if current == heads:
            self.engine = engine
            self.add("database", Status.OK, f"{shown} answers, migrated to {', '.join(sorted(heads))} (the newest)")
            return
        engine.dispose()
        known = {revision.revision for revision in script.walk_revisions()}
        if not current:
            self.add("database", Status.FAIL, f"{shown} answers but has no schema (not migrated)",
                     "run `sticktionary db upgrade`")
        elif current - known:
            self.add("database", Status.FAIL, f"{shown} is at revision {', '.join(sorted(current))}, which this "
                     "version of Sticktionary does not know (a newer version migrated it)",
                     "run the version that migrated it, or upgrade this one")
        else:
            self.add("database", Status.FAIL, f"{shown} is at revision {', '.join(sorted(current))}, the newest is "
                     f"{', '.join(sorted(heads))}", "run `sticktionary db upgrade`")

    # ------------------------------------------------------------------ redis
    def check_redis(self) -> None:
        url = self.settings.telegram.redis_url
        if not url:
            self.add("redis", Status.OK, "not configured (each process keeps its own chat order and pacing; "
                     "`run --workers N` needs STICKTIONARY_REDIS_URL)")
            return
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        except Exception as error:  # noqa: BLE001 - any failure to talk to it is the finding
            self.add("redis", Status.FAIL, f"{_hide_password(url)} does not answer: {one_line(error)}",
                     "start Redis, or fix STICKTIONARY_REDIS_URL (unset it to run without workers)")
            return
        finally:
            client.close()
        self.add("redis", Status.OK, f"{_hide_password(url)} answers")

    # ------------------------------------------------------------------ bots
    def check_bots(self) -> None:
        import httpx

        if not self.settings.telegram.bots:
            self.add("bots", Status.WARN, "no bots in STICKTIONARY_BOTS (`sticktionary run` refuses to start)",
                     f"set STICKTIONARY_BOTS, e.g. {_example('bots')}")
            return
        api = self.settings.telegram.telegram_api.rstrip("/")
        with httpx.Client(timeout=HTTP_TIMEOUT) as client:
            for config in self.settings.telegram.bots:
                self._check_bot(client, api, config)

    def _check_bot(self, client, api: str, config) -> None:
        key, token = config.key, config.token.get_secret_value()
        check = f"bot {key}"
        me, problem = bot_api(client, api, token, "getMe")
        if problem is not None:
            self.bot_ids[key] = False
            self.add(check, Status.FAIL, problem.detail, problem.fix)
            self.add(f"webhook {key}", Status.SKIP, "the token must answer first")
            return
        self.bot_ids[key] = True
        self.add(check, Status.OK, f"@{me.get('username')} (id {me.get('id')}, {config.framework}, "
                                   f"{'/'.join(config.languages)})")
        info, problem = bot_api(client, api, token, "getWebhookInfo")
        if problem is not None:
            self.add(f"webhook {key}", Status.FAIL, problem.detail, problem.fix)
            return
        self._judge_webhook(key, info)

    def _judge_webhook(self, key: str, info: dict) -> None:
        check = f"webhook {key}"
        held, pending = info.get("url") or "", info.get("pending_update_count", 0)
        base = self.settings.telegram.webhook_url
        if base:
            wanted = f"{base.rstrip('/')}/telegram/{key}"
            if not held:
                self.add(check, Status.WARN, f"Telegram holds no webhook for this bot yet ({pending} updates waiting)",
                         f"`sticktionary run` sets it to {wanted} when it starts")
                return
            if held != wanted:
                self.add(check, Status.FAIL, f"Telegram delivers to {held}, the settings say {wanted}",
                         "restart `sticktionary run` (it sets the webhook), or fix STICKTIONARY_WEBHOOK_URL; "
                         "if another deployment uses this token, give each its own bot")
                return
        elif held:
            self.add(check, Status.FAIL, f"Telegram holds a webhook ({held}) but STICKTIONARY_WEBHOOK_URL is unset: "
                     "long polling gets no updates while it is set",
                     f"set STICKTIONARY_WEBHOOK_URL to serve it, or remove it: "
                     f"curl {self.settings.telegram.telegram_api.rstrip('/')}/bot<TOKEN>/deleteWebhook")
            return
        error = info.get("last_error_message")
        where = held or "long polling"
        if error:
            self.add(check, Status.WARN, f"{where}; Telegram's last delivery failed: {error} ({pending} updates "
                     "waiting)", "check that the webhook server is reachable from Telegram over HTTPS")
            return
        self.add(check, Status.OK, f"{where} ({pending} updates waiting)")

    # ------------------------------------------------------------------ folders and disk
    def check_sticker_folder(self) -> None:
        root = self.settings.storage.sticker_root
        check = "sticker folder"
        if not root.is_dir():
            self.add(check, Status.FAIL, f"{root} is not a folder",
                     "set STICKTIONARY_STICKER_ROOT to where the sticker files are (or import stickers first)")
            return
        files = 0
        sample: Path | None = None
        for path in _files(root):
            files += 1
            sample = sample or path
        if sample is not None:
            with open(sample, "rb") as handle:  # PermissionError is the check's finding
                handle.read(1)
        self.sticker_folder_ok = True
        detail = f"{root} is readable, {files} files"
        if self.engine is None:
            self.add(check, Status.OK, detail)
            return
        stored, missing, example = self._stickers_on_disk(root)
        if missing:
            self.add(check, Status.WARN, f"{detail}; {missing} of the database's {stored} stickers have no file "
                     f"there (e.g. {example})",
                     "put the sticker files where STICKTIONARY_STICKER_ROOT points; those stickers cannot be shown")
            return
        self.add(check, Status.OK, f"{detail}; all {stored} stickers of the database are there")

    def _stickers_on_disk(self, root: Path) -> tuple[int, int, str | None]:
        from sqlmodel import Session, select

        from storage.models import Sticker

        stored = missing = 0
        example = None
        with Session(self.engine) as session:
            for (file_path,) in session.execute(select(Sticker.file_path)).yield_per(10_000):
                stored += 1
                if not (root / file_path).is_file():
                    missing += 1
                    example = example or file_path
        return stored, missing, example

    def check_export_folder(self) -> None:
        root = self.settings.exports.export_dir
        check = "export folder"
        target, exists = root, root.exists()
        if not exists:
            target = next((p for p in root.parents if p.exists()), Path("."))
        if not target.is_dir():
            self.add(check, Status.FAIL, f"{root} cannot be written: {target} is not a folder",
                     "set STICKTIONARY_EXPORT_DIR to a folder this user can write")
            return
        try:
            with tempfile.NamedTemporaryFile(dir=target, prefix=".doctor-") as probe:
                probe.write(b"sticktionary doctor")
                probe.flush()
        except OSError as error:
            self.add(check, Status.FAIL, f"{root} cannot be written: {error.strerror or error}",
                     "give this user write access, or set STICKTIONARY_EXPORT_DIR to a writable folder")
            return
        detail = f"{root} is writable" if exists else f"{root} does not exist yet; the first export creates it " \
                                                      f"({target} is writable)"
        self.add(check, Status.OK, detail)

    def check_free_disk(self) -> None:
        from sqlalchemy.engine import make_url

        places = {"stickers": self.settings.storage.sticker_root, "exports": self.settings.exports.export_dir,
                  "media cache": self.settings.telegram.media_cache}
        with contextlib.suppress(Exception):
            url = make_url(self.settings.storage.database_url)
            if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
                places = {"database": Path(url.database).parent, **places}
        systems: dict[int, tuple[list[str], Path]] = {}
        for name, path in places.items():
            existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
            systems.setdefault(existing.stat().st_dev, ([], existing))[0].append(name)
        for names, path in systems.values():
            usage = shutil.disk_usage(path)
            share = usage.free / usage.total if usage.total else 0
            detail = f"{_bytes(usage.free)} free of {_bytes(usage.total)} ({share:.0%}) under {path}"
            check = f"free disk ({', '.join(names)})"
            if usage.free < FREE_FAIL_BYTES:
                self.add(check, Status.FAIL, detail, "free some space: exports and the database need room to grow")
            elif usage.free < FREE_WARN_BYTES or share < FREE_WARN_SHARE:
                self.add(check, Status.WARN, detail, "free some space soon (or lower STICKTIONARY_EXPORT_KEEP)")
            else:
                self.add(check, Status.OK, detail)

    # ------------------------------------------------------------------ database contents
    def check_outbox(self) -> None:
        if self.engine is None:
            self.add("outbox", Status.SKIP, "needs the database")
            return
        from core.outbox import Outbox
        from storage.db import Database

        counts = Outbox(Database(self.engine)).counts()
        waiting = counts["pending"] + counts["sending"]
        if counts["dead"]:
            self.add("outbox", Status.WARN, f"{counts['dead']} dead letters ({waiting} waiting)",
                     "see why with `sticktionary outbox list --status dead`; after fixing the cause, "
                     "`sticktionary outbox retry --all`")
            return
        self.add("outbox", Status.OK, f"no dead letters ({waiting} waiting, {counts['held']} held)")

    def check_file_ids(self) -> None:
        if self.engine is None:
            self.add("file ids", Status.SKIP, "needs the database")
            return
        if not self.settings.telegram.bots:
            return
        from sqlalchemy import exists, func, or_, select
        from sqlmodel import Session, col

        from storage.models import ChatContext, Query, Sticker, TelegramFile

        with Session(self.engine) as session:
            for config in self.settings.telegram.bots:
                languages = list(config.languages)
                in_game = or_(
                    exists().where(col(ChatContext.sticker_id) == col(Sticker.id),
                                   col(ChatContext.language).in_(languages)),
                    exists().where(col(Query.sticker_id) == col(Sticker.id), col(Query.language).in_(languages)))
                cached = exists().where(col(TelegramFile.sticker_id) == col(Sticker.id),
                                        col(TelegramFile.bot_key) == config.key)
                total = session.execute(select(func.count()).select_from(Sticker).where(in_game)).scalar_one()
                without = session.execute(select(func.count()).select_from(Sticker)
                                          .where(in_game, ~cached)).scalar_one()
                check = f"file ids {config.key}"
                detail = f"{without} of {total} stickers in {'/'.join(languages)} have no Telegram file id for this bot"
                if without and not self.sticker_folder_ok:
                    self.add(check, Status.WARN, f"{detail}, and the sticker folder is not readable: they cannot be "
                             "sent", "fix the sticker folder (see above)")
                elif without:
                    self.add(check, Status.OK, f"{detail} yet: each is uploaded from the sticker folder when first shown")
                else:
                    self.add(check, Status.OK, detail)

    def check_inline(self) -> None:
        """Per bot: searchable stickers inline search cannot offer yet (no sticker file id of the bot)."""
        if self.engine is None or not self.settings.telegram.bots:
            return
        from core.game.inline_search import offer_counts

        chat = self.settings.telegram.file_chat
        for config in self.settings.telegram.bots:
            counts = offer_counts(self.engine, config.key, config.languages)
            check = f"inline {config.key}"
            detail = (f"{counts.missing} of {counts.stickers} searchable stickers are left out of inline results "
                      f"until uploaded ({counts.gifs} GIFs never are)")
            if not counts.missing:
                self.add(check, Status.OK, f"every one of {counts.stickers} searchable stickers can be offered inline "
                         f"({counts.gifs} GIFs cannot)")
            elif chat is None:
                self.add(check, Status.WARN, detail, "set STICKTIONARY_FILE_CHAT to a private group or channel "
                         "where the bot may post: `sticktionary run` then uploads them (20 a minute)")
            else:
                hours = counts.missing / 20 / 60
                self.add(check, Status.OK, f"{detail}: `sticktionary run` uploads them to {chat}, "
                         f"about {hours:.1f} h at 20 a minute")


def _files(root: Path) -> Iterator[Path]:
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file():
                    yield Path(entry.path)


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{count} B"
        value /= 1024
    return f"{count} B"  # pragma: no cover


def _example(name: str) -> str:
    from storage.settings import EXAMPLES

    return EXAMPLES[name]


def render(findings: list[Finding], echo: Callable[[str], None]) -> None:
    for finding in findings:
        echo(finding.line())


__all__ = ["Finding", "Status", "examine", "healthy", "render"]
