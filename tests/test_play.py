"""`sticktionary play` without a browser: the sandbox's chat stream, bot list and files, and the
dashboard's data and charts. (The page itself is driven in a real browser in test_play_browser.py.)"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import ClientSession, FormData
from PIL import Image
from sqlmodel import Session

from core.dashboard import dashboard, latest_metrics, queries_over_time
from core.exports import run_export
from core.nicknames import default_nickname
from offline.sandbox import Sandbox
from sticktionary.play.web import chart
from storage.models import RetrievalTask, utcnow
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.helpers import labeled_round, make_player, make_world

TOKEN = "1001:stream"


async def _events(response, count: int, timeout: float = 5) -> list[tuple[str, dict]]:
    """The next `count` server-sent events (comments skipped)."""
    events, name, data = [], None, None
    async with asyncio.timeout(timeout):
        while len(events) < count:
            line = (await response.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line == "" and name:
                events.append((name, data))
                name = data = None
    return events


async def _api(http: ClientSession, base: str, method: str, **params) -> dict:
    async with http.post(f"{base}/bot{TOKEN}/{method}", json=params) as response:
        body = await response.json()
        assert body["ok"], body
        return body["result"]


@pytest.mark.asyncio
async def test_the_stream_follows_a_chat_in_order_and_resumes_where_asked():
    sandbox = Sandbox(rate_limits=False)
    sandbox.add_bot(TOKEN, "stream_bot")
    base = await sandbox.start()
    try:
        async with ClientSession() as http:
            async with http.get(f"{base}/sim/stream", params={"token": TOKEN, "user_id": 5, "since": 0}) as stream:
                assert stream.headers["Content-Type"] == "text/event-stream"
                # The chat does not exist yet: the stream waits for it.
                async with http.post(f"{base}/sim/message", json={"token": TOKEN, "user_id": 5, "text": "/start"}):
                    pass
                keyboard = {"inline_keyboard": [[{"text": "Go", "callback_data": "go:1"}]]}
                sent = await _api(http, base, "sendMessage", chat_id=5, text="hello", reply_markup=keyboard)
                await _api(http, base, "editMessageText", chat_id=5, message_id=sent["message_id"], text="hello again")
                async with http.post(f"{base}/sim/press", json={"token": TOKEN, "user_id": 5, "data": "go:1",
                                                                 "message_id": sent["message_id"]}) as response:
                    callback_id = (await response.json())["result"]["callback_id"]
                events = await _events(stream, 4)
                assert [name for name, _ in events] == ["entry"] * 4
                assert [e["index"] for _, e in events] == [0, 1, 2, 3]
                user, bot, edit, press = (e["entry"] for _, e in events)
                assert user["by"] == "user" and user["text"] == "/start"
                assert bot["text"] == "hello" and bot["reply_markup"] == keyboard
                assert edit["edit"] and edit["text"] == "hello again" and edit["message_id"] == sent["message_id"]
                assert press["press"] == "go:1" and "answer" not in press
                # The answer to a press already streamed, then a deletion.
                await _api(http, base, "answerCallbackQuery", callback_query_id=callback_id, text="Saved!")
                await _api(http, base, "deleteMessage", chat_id=5, message_id=sent["message_id"])
                assert await _events(stream, 2) == [
                    # url: a deep link the answer opens (none here); user_id: who pressed, in a group (none here)
                    ("answer", {"callback_id": callback_id, "text": "Saved!", "alert": False, "url": None,
                                "user_id": None}),
                    ("delete", {"message_id": sent["message_id"]})]
                # A video sticker: its file is served with a type a browser can play.
                form = FormData()
                form.add_field("chat_id", "5")
                form.add_field("sticker", b"\x1aE\xdf\xa3webm", filename="7.webm")
                async with http.post(f"{base}/bot{TOKEN}/sendSticker", data=form) as response:
                    sticker = (await response.json())["result"]["sticker"]
                ((name, data),) = await _events(stream, 1)
                assert name == "entry" and data["index"] == 4 and data["entry"]["sticker"]["is_video"]
            async with http.get(f"{base}/sim/file/{sticker['file_id']}") as response:
                assert response.content_type == "video/webm" and await response.read() == b"\x1aE\xdf\xa3webm"
            async with http.get(f"{base}/sim/file/no-such-file") as response:
                assert response.status == 404
            # Resuming from an index: only what came after, the answer already inside the press.
            async with http.get(f"{base}/sim/stream", params={"token": TOKEN, "user_id": 5, "since": 3}) as stream:
                events = await _events(stream, 3)
                assert [(n, e.get("index")) for n, e in events] == [("entry", 3), ("entry", 4), ("delete", None)]
                assert events[0][1]["entry"]["answer"] == "Saved!"
            for params in ({"token": "9:nope", "user_id": 5}, {"token": TOKEN, "user_id": "x"},
                           {"token": TOKEN, "user_id": 5, "since": "-"}):
                async with http.get(f"{base}/sim/stream", params=params) as response:
                    assert response.status == 400
            # The existing /sim actions are untouched by the new routes.
            async with http.get(f"{base}/sim/transcript", params={"token": TOKEN, "user_id": 5}) as response:
                assert len((await response.json())["result"]) == 5
    finally:
        await sandbox.stop()


@pytest.mark.asyncio
async def test_bots_list_their_commands_and_stop_ends_open_streams():
    sandbox = Sandbox(rate_limits=False)
    sandbox.add_bot(TOKEN, "stream_bot")
    base = await sandbox.start()
    async with ClientSession() as http:
        commands = [{"command": "play", "description": "Next task"}]
        await _api(http, base, "setMyCommands", commands=commands, language_code="en")
        async with http.get(f"{base}/sim/bots") as response:
            (bot,) = (await response.json())["result"]
        assert bot["username"] == "stream_bot" and bot["token"] == TOKEN and bot["commands"] == {"en": commands}
        async with http.get(f"{base}/sim/stream", params={"token": TOKEN, "user_id": 1}) as stream:
            started = asyncio.get_running_loop().time()
            await sandbox.stop()
            assert await asyncio.wait_for(stream.content.read(), 5) == b""  # ended, nothing pending
            assert asyncio.get_running_loop().time() - started < 5


def test_dashboard_shows_what_players_did(db, settings, tmp_path):
    settings = settings.replace(exports={"export_dir": tmp_path / "exports"},
                                   privacy={"pseudonym_key": TEST_PSEUDONYM_KEY})
    game = make_world(db, settings, languages=("en", "zh"))
    empty = dashboard(db, settings)
    assert empty["timeline"]["buckets"] == [] and empty["recent"] == [] and empty["metrics"] is None
    assert empty["statistics"]["en"]["queries"] == 12  # the seeds are the dataset so far
    alice, bob = make_player(game, 1), make_player(game, 2)
    labeled_round(game, alice, queries=("happy dance", "victory lap"))
    task = game.assignment.next_task(bob, prefer="retriever")
    with Session(db) as session:
        target = session.get(RetrievalTask, task.task_id).sticker_id
    game.retrieval.submit_ranking(bob, task.task_id, [c.id for c in task.candidates if c.id != target][:2])  # a miss
    carol, dan = make_player(game, 3, "zh"), make_player(game, 4, "zh")
    labeled_round(game, carol, queries=("开心",))
    task = game.assignment.next_task(dan, prefer="retriever")
    with Session(db) as session:
        target = session.get(RetrievalTask, task.task_id).sticker_id
    assert game.retrieval.submit_ranking(dan, task.task_id, [target]).hit_rank == 1

    data = dashboard(db, settings)
    timeline = data["timeline"]
    assert timeline["unit"] == "minute"
    assert timeline["languages"]["en"]["total"][-1] == 2 and timeline["languages"]["zh"]["total"][-1] == 1
    assert {q["text"]: q["status"] for q in data["recent"]} == {
        "happy dance": "needs_review", "victory lap": "needs_review", "开心": "validated"}
    assert data["review"]["needs_review"] == 2 and data["review"]["queries"]["validated"] == 25
    # players are shown by nickname (here the generated ones), never by their Telegram name
    assert data["leaderboards"]["zh"] == [{"rank": 1, "name": default_nickname(carol, "zh"), "points": 3},
                                          {"rank": 2, "name": default_nickname(dan, "zh"), "points": 3}]
    assert data["leaderboards"]["en"] == []
    assert data["statistics"]["zh"]["queries"] == 13 and data["statistics"]["en"]["queries"] == 12
    json.dumps(data)  # what the page receives

    # A week later the timeline is in hours or days, not 10,000 minutes.
    later = queries_over_time(db, now=utcnow() + timedelta(days=7))
    assert later["unit"] == "day" and len(later["buckets"]) == 9 and later["languages"]["en"]["total"][0] == 0

    summary = run_export(db, settings)
    metrics = latest_metrics(settings.exports.export_dir)
    assert metrics["version"] == summary.version
    assert metrics["languages"]["zh"]["bm25_retrieval"] == summary.metrics["zh"]["bm25_retrieval"]
    data = dashboard(db, settings)
    for name in ("timeline", "review", "recall"):
        image = Image.open(io.BytesIO(chart(name, data)))
        assert image.format == "PNG" and image.width >= 640
        assert len(image.convert("RGB").getcolors(1 << 20)) > 4  # drawn on, not a blank canvas
    with pytest.raises(KeyError):
        chart("nope", data)


def test_play_refuses_a_busy_port_at_once_and_says_what_to_do(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([str(Path(sys.executable).with_name("sticktionary")), "play", "--no-browser",
                                 "--port", str(port), "--workdir", str(tmp_path / "play")],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr
    assert not (tmp_path / "play").exists()  # nothing was made


def test_play_help_documents_every_option():
    from typer.testing import CliRunner

    from sticktionary.cli import app

    result = CliRunner().invoke(app, ["play", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option, words in {"--port": "default: 8080", "--no-browser": "do not open a browser",
                          "--players": "simulated players per language", "--think": "mean seconds",
                          "--workdir": "emptied first", "--export-every": "metrics the dashboard shows",
                          "--seed": "seed for the simulated players"}.items():
        assert option in result.output and words in result.output, option


@pytest.mark.asyncio
async def test_a_waiting_long_poll_is_answered_when_released():
    sandbox = Sandbox(rate_limits=False)
    sandbox.add_bot(TOKEN, "stream_bot")
    base = await sandbox.start()
    try:
        async with ClientSession() as http:
            poll = asyncio.create_task(_api(http, base, "getUpdates", timeout=10))
            await asyncio.sleep(0.2)
            assert not poll.done()  # a long poll waits for updates
            started = asyncio.get_running_loop().time()
            sandbox.release_long_polls()
            assert await asyncio.wait_for(poll, 2) == []
            assert asyncio.get_running_loop().time() - started < 1
    finally:
        await sandbox.stop()
