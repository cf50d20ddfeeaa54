"""A group race on the play page, in Chromium through Playwright, against the real `sticktionary play`:
Alex labels a sticker privately; Sam joins and, in the group "Sticker friends", posts a round and picks
the right number (the round's message shows Sam picked); the moderator, who never started the bot,
presses a number and gets the Join alert whose button opens the private chat; Alex, the round's
labeler, is told to sit it out; the round closes on time and its message shows the answer and Sam's
points; /top in the group shows the group's table. One person, switching between the members."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlmodel import Session, select

from storage.db import make_engine
from storage.models import GroupRound
from tests import test_play_browser as page_tests
from tests.test_play_browser import EN, STARTED_WITHIN, WAIT, Chat, _free_port, playwright_api

# The browser tests' fixtures: Chromium, screenshots, and the skip (or CI failure) without a browser.
browser, shots, _browser_available = page_tests.browser, page_tests.shots, page_tests._browser_available

GROUP = -100_1001
ROUND_SECONDS = 12


@pytest.fixture(scope="module")
def play(tmp_path_factory):
    """`sticktionary play` with no simulated players and short group rounds."""
    workdir = tmp_path_factory.mktemp("play-group")
    port = _free_port()
    command = [str(Path(sys.executable).with_name("sticktionary")), "play", "--no-browser", "--port", str(port),
               "--players", "0", "--workdir", str(workdir)]
    env = {**os.environ, "STICKTIONARY_GOLD_RATE": "0", "PYTHONUNBUFFERED": "1",
           "STICKTIONARY_GROUP_ROUND_SECONDS": str(ROUND_SECONDS), "STICKTIONARY_GROUP_PACE_SECONDS": "0"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def read() -> None:
        for line in process.stdout:
            output.append(line)
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + STARTED_WITHIN
    while True:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            process.kill()
            pytest.fail(f"`sticktionary play` was not ready within {STARTED_WITHIN} s:\n{''.join(output)}")
        if line.startswith("ready in"):
            break
    yield f"http://127.0.0.1:{port}", make_engine(f"sqlite:///{workdir / 'demo.sqlite3'}")
    process.send_signal(signal.SIGINT)
    assert process.wait(30) == 0, "".join(output)
    assert "Traceback" not in "".join(output), "".join(output)


def test_a_group_race_seen_from_each_member(play, browser, shots):
    base, db = play
    expect = playwright_api.expect
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{base}/#en/Alex")
    chat = Chat(page)
    # Alex labels a sticker privately: the round a group can race on.
    label, _ = chat.start(*EN, shots)
    chat.send("when the joke lands perfectly")
    expect(label.locator(".text")).to_contain_text("“when the joke lands perfectly”: ", timeout=WAIT)
    chat.press("✅ Submit")
    expect(label.locator(".kb-row button")).to_have_count(0, timeout=WAIT)
    # Sam joins the game privately.
    chat.become("Sam")
    chat.start(*EN, shots)
    # The group: the bot said hello when it was added; Sam posts a round.
    page.click(f"#bots [data-group='{GROUP}']")
    expect(page.locator("#head-title")).to_have_text("Sticker friends")
    chat.row("send /round to start one")
    shots(page, "group")
    chat.send("/round")
    grid = chat.row("Group round")
    assert chat.buttons(grid)[:9] == [str(n) for n in range(1, 10)]
    assert chat.buttons(grid)[-1] == "🙋 Join the game"
    assert chat.loaded(f"#messages .row[data-message-id='{chat.id_of(grid)}'] img.photo")
    with Session(db) as session:
        found = session.exec(select(GroupRound)).one()
    right = found.candidate_ids.index(found.sticker_id) + 1
    grid.locator(f".kb-row button[data-callback='gp:{found.id}:{right}']").click()
    expect(page.locator("#toast")).to_contain_text(f"Your pick: {right}", timeout=WAIT)
    expect(grid.locator(".text")).to_contain_text("Picked:", timeout=WAIT)
    shots(page, "sam-picked")
    # The moderator never started the bot: an alert, and its button opens the private chat.
    chat.become("Moderator")
    expect(page.locator("#head-title")).to_have_text("Sticker friends")
    grid = chat.message(chat.id_of(grid))
    grid.locator(f".kb-row button[data-callback='gp:{found.id}:1']").click()
    expect(page.locator("#alert-text")).to_contain_text("start the game with the bot privately", timeout=WAIT)
    expect(page.locator("#alert-open")).to_be_visible()
    shots(page, "moderator-join")
    page.click("#alert-open")
    expect(page.locator("#head-title")).to_have_text("Sticktionary (English)")
    # Alex wrote the queries: sits this one out.
    page.click(f"#bots [data-group='{GROUP}']")
    chat.become("Alex")
    grid = chat.message(chat.id_of(grid))
    grid.locator(f".kb-row button[data-callback='gp:{found.id}:{right}']").click()
    expect(page.locator("#alert-text")).to_contain_text("You wrote the queries for this sticker", timeout=WAIT)
    page.click("#alert-ok")
    # The round closes on time: the answer, and Sam's points, on the same message.
    expect(grid.locator(".text")).to_contain_text(f"It was sticker {right}", timeout=(ROUND_SECONDS + 20) * 1000)
    expect(grid.locator(".text")).to_contain_text("+3")
    expect(grid.locator(".kb-row button")).to_have_count(0)
    shots(page, "closed")
    chat.send("/top")
    table = chat.row("This group, last 7 days")
    expect(table.locator(".text")).to_contain_text("— 3")
    shots(page, "group-top")
    assert not errors, errors
    context.close()
