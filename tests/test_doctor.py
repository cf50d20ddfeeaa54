"""`sticktionary doctor` against a real SQLite file and the Bot API sandbox over real HTTP, run as the
operator runs it (a process of its own): a healthy set-up passes; each broken part gets one clear
`fail` line, exit 1, and no traceback; no token is ever printed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import httpx
import pytest

from sticktionary.doctor import Status, examine, healthy
from storage.db import make_engine, session_scope
from storage.models import ChatContext, OutboxMessage, OutboxStatus, Sticker, TelegramFile
from storage.settings import Settings, room_of
from tests.conftest import TEST_PSEUDONYM_KEY

TOKEN = "5550001:AAHdoctorTestTokenThatLooksQuiteReal01"
WRONG = "5550002:AAHnotAValidTokenForTheSandboxAtAllXyz9"
WEBHOOK = "https://bots.example.org"
SECRET = "webhook-secret-for-doctor-tests"


@pytest.fixture(scope="module")
def sandbox():
    """The sandbox in a process of its own, one bot registered; its base URL."""
    process = subprocess.Popen([sys.executable, "-m", "offline.sandbox", "--bot", f"{TOKEN}=doctor_bot", "--no-limits"],
                               stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("ready "), line
        yield line.split()[1]
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def setup(tmp_path, sqlite_template, sandbox):
    """A healthy set-up: a migrated database with two stickers (one with a file id), their files,
    a writable export folder, the bot's webhook where the settings say. Returns its environment."""
    database = tmp_path / "game.sqlite3"
    shutil.copy(sqlite_template, database)
    stickers = tmp_path / "stickers"
    stickers.mkdir()
    engine = make_engine(f"sqlite:///{database}")
    with session_scope(engine) as session:
        for n in (1, 2):
            (stickers / f"{n}.png").write_bytes(b"\x89PNG fake")
            sticker = Sticker(key=f"{n}.png", file_path=f"{n}.png", format="png")
            session.add(sticker)
            session.flush()
            session.add(ChatContext(sticker_id=sticker.id, conversation="01.json", message_id=n, language="en",
                                    status="approved"))
        session.add(TelegramFile(bot_key="doctor", sticker_id=1, kind="sticker", file_id="file-1"))
    engine.dispose()
    (tmp_path / "exports").mkdir()
    _set_webhook(sandbox, f"{WEBHOOK}/telegram/doctor")
    return {
        "STICKTIONARY_DATABASE_URL": f"sqlite:///{database}",
        "STICKTIONARY_STICKER_ROOT": str(stickers),
        "STICKTIONARY_EXPORT_DIR": str(tmp_path / "exports"),
        "STICKTIONARY_MEDIA_CACHE": str(tmp_path / "media-cache"),
        "STICKTIONARY_TELEGRAM_API": sandbox,
        "STICKTIONARY_BOTS": json.dumps([{"token": TOKEN, "name": "doctor", "languages": ["en"]}]),
        "STICKTIONARY_WEBHOOK_URL": WEBHOOK,
        "STICKTIONARY_WEBHOOK_SECRET": SECRET,
        "STICKTIONARY_REDIS_URL": "redis://127.0.0.1:6379/9",
        "STICKTIONARY_PSEUDONYM_KEY": TEST_PSEUDONYM_KEY,
        "STICKTIONARY_MODERATORS": "4242",
    }


def _set_webhook(base: str, url: str) -> None:
    answer = httpx.post(f"{base}/bot{TOKEN}/setWebhook", json={"url": url, "secret_token": SECRET}).json()
    assert answer["ok"], answer


def _doctor(tmp_path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    """The command as an operator runs it: its own process, its own folder, only these settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STICKTIONARY_")}
    return subprocess.run([sys.executable, "-c", "from sticktionary.cli import app; app()", "doctor", *extra],
                          env={**clean, **env}, cwd=tmp_path, capture_output=True, text=True, timeout=120)


def _lines(result) -> list[str]:
    return result.stdout.strip().splitlines()


def _fails(result) -> list[str]:
    return [line for line in _lines(result) if line.startswith("fail")]


def _no_traceback_nor_secret(result) -> None:
    output = result.stdout + result.stderr
    assert "Traceback" not in output and TOKEN not in output and WRONG not in output and SECRET not in output


def test_a_healthy_set_up_passes(tmp_path, setup):
    result = _doctor(tmp_path, setup)
    _no_traceback_nor_secret(result)
    assert result.returncode == 0, result.stdout
    lines = _lines(result)
    assert all(line.startswith("ok ") for line in lines), lines
    by_check = {line.split(":")[0][5:]: line for line in lines}
    assert "migrated to" in by_check["database"] and "(the newest)" in by_check["database"]
    assert "@doctor_bot" in by_check["bot doctor"]
    assert f"{WEBHOOK}/telegram/doctor" in by_check["webhook doctor"]
    assert "2 files" in by_check["sticker folder"] and "all 2 stickers" in by_check["sticker folder"]
    assert "1 of 2 stickers in en have no Telegram file id" in by_check["file ids doctor"]
    assert "answers" in by_check["redis"] and "no dead letters" in by_check["outbox"]
    assert by_check["export folder"].endswith("exports is writable")

    as_json = _doctor(tmp_path, setup, "--json")
    report = json.loads(as_json.stdout)
    assert as_json.returncode == 0 and report["ok"] is True
    assert [c["check"] for c in report["checks"]][:3] == ["settings", "database", "redis"]
    assert {c["status"] for c in report["checks"]} == {"ok"}


def test_a_dead_database_url(tmp_path, setup):
    result = _doctor(tmp_path, {**setup, "STICKTIONARY_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"})
    _no_traceback_nor_secret(result)
    assert result.returncode == 1
    [line] = _fails(result)
    assert line.startswith("fail database: postgresql+psycopg://nobody@127.0.0.1:1/none does not answer")
    assert "Connection refused" in line and "STICKTIONARY_DATABASE_URL" in line
    # What needs the database says so instead of failing again.
    assert "skip outbox: needs the database" in _lines(result)


def test_a_wrong_token(tmp_path, setup):
    bots = json.dumps([{"token": WRONG, "name": "doctor", "languages": ["en"]}])
    result = _doctor(tmp_path, {**setup, "STICKTIONARY_BOTS": bots})
    _no_traceback_nor_secret(result)
    assert result.returncode == 1
    [line] = _fails(result)
    assert line.startswith("fail bot doctor: the Bot API refused the token (getMe: 401 Unauthorized)")
    assert "@BotFather" in line


def test_an_export_folder_that_cannot_be_written(tmp_path, setup):
    # Run as root, permissions do not stop a write: a folder under a regular file cannot exist.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file")
    result = _doctor(tmp_path, {**setup, "STICKTIONARY_EXPORT_DIR": str(blocker / "exports")})
    _no_traceback_nor_secret(result)
    assert result.returncode == 1
    [line] = _fails(result)
    assert line.startswith(f"fail export folder: {blocker / 'exports'} cannot be written")
    assert "STICKTIONARY_EXPORT_DIR" in line


@pytest.mark.skipif(shutil.which("chattr") is None, reason="no chattr")
def test_an_immutable_export_folder(tmp_path, setup):
    """An existing folder nobody may write to (chattr +i holds even for root), where the file system allows it."""
    folder = tmp_path / "exports"
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("this file system does not take chattr +i")
    try:
        result = _doctor(tmp_path, {**setup, "STICKTIONARY_EXPORT_DIR": str(folder)})
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    _no_traceback_nor_secret(result)
    assert result.returncode == 1
    [line] = _fails(result)
    assert line.startswith(f"fail export folder: {folder} cannot be written")


def test_settings_that_do_not_parse(tmp_path, setup):
    result = _doctor(tmp_path, {**setup, "STICKTIONARY_BOTS": '[{"token": '})
    _no_traceback_nor_secret(result)
    assert result.returncode == 1
    assert _lines(result) == [line for line in _lines(result) if line.startswith("fail settings: STICKTIONARY_BOTS")]


def _settings(env: dict, **changes) -> Settings:
    values = {key.removeprefix("STICKTIONARY_").lower(): value for key, value in env.items()}
    values["bots"] = json.loads(values["bots"])
    values["moderators"] = [int(values["moderators"])]
    rooms = room_of()
    by_room: dict[str, dict] = {}
    for name, value in {**values, **changes}.items():
        by_room.setdefault(rooms[name], {})[name] = value
    return Settings(_env_file=None, **by_room)


def test_webhooks_that_differ_from_the_settings(setup, sandbox):
    settings = _settings(setup)
    _set_webhook(sandbox, "https://elsewhere.example.org/hook")
    findings = {f.check: f for f in examine(settings)}
    assert findings["webhook doctor"].status == Status.FAIL
    assert "elsewhere.example.org" in findings["webhook doctor"].detail
    # Long polling while Telegram holds a webhook: getUpdates would get nothing.
    findings = {f.check: f for f in examine(settings.replace(telegram={"webhook_url": None}))}
    assert findings["webhook doctor"].status == Status.FAIL and "long polling" in findings["webhook doctor"].detail
    # No webhook yet: `run` sets it.
    _set_webhook(sandbox, "")
    findings = examine(settings)
    assert healthy(findings) and {f.check: f for f in findings}["webhook doctor"].status == Status.WARN


def test_dead_letters_and_a_missing_sticker_file_are_warnings(setup, tmp_path):
    settings = _settings(setup)
    engine = make_engine(settings.storage.database_url)
    with session_scope(engine) as session:
        session.add(OutboxMessage(dedupe_key="gone", kind="feedback_hit", payload={}, status=OutboxStatus.DEAD,
                                  last_error="chat not found"))
    engine.dispose()
    (settings.storage.sticker_root / "2.png").unlink()
    findings = examine(settings)
    by_check = {f.check: f for f in findings}
    assert healthy(findings)
    assert by_check["outbox"].status == Status.WARN and "1 dead letters" in by_check["outbox"].detail
    assert "outbox retry" in by_check["outbox"].fix
    assert by_check["sticker folder"].status == Status.WARN and "1 of the database's 2" in by_check["sticker folder"].detail


def test_a_webhook_without_its_secret(setup):
    findings = examine(_settings(setup, webhook_secret=None))
    assert not healthy(findings)
    [failed] = [f for f in findings if f.status == Status.FAIL]
    assert failed.check == "webhook secret" and "STICKTIONARY_WEBHOOK_SECRET" in failed.fix
