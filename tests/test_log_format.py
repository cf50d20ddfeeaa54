"""STICKTIONARY_LOG_FORMAT=json: one JSON object a line, with the bot, the update id and the player
where known, and never a secret."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading

from bots.log_context import handling_update, log_fields, note_player
from sticktionary.log_json import JsonFormatter
from sticktionary.logs import RedactingFilter

TOKEN = "5550003:AAHjsonLogsTestTokenThatLooksQuiteReal7"
# A configured secret with characters JSON escapes: redaction must happen before the escaping.
KEY = 'pseudo"nym\\key-ünïcode'

SCRIPT = textwrap.dedent("""
    import logging
    import os

    from bots.log_context import handling_update, note_player
    from sticktionary.cli_common import log_to_stderr

    token, key = os.environ["TEST_TOKEN"], os.environ["STICKTIONARY_PSEUDONYM_KEY"]
    log_to_stderr()  # as `run`, `jobs start` and `export serve` do
    log = logging.getLogger("bots.runtime")
    log.info("started with %s", token)
    with handling_update("en", 812):
        log.warning("update seen")
        note_player(17)
        try:
            raise RuntimeError(f"POST https://api.telegram.org/bot{token}/sendMessage failed, key {key}")
        except RuntimeError:
            log.exception("update %s failed", 812)
    log.info("after", extra={"bot": "zh"})
    logging.getLogger("core.game").error("a multi-line\\nmessage %s", key)
""")


def test_json_lines_carry_the_update_and_no_secret(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STICKTIONARY_")}
    env.update(STICKTIONARY_LOG_FORMAT="json", STICKTIONARY_PSEUDONYM_KEY=KEY, TEST_TOKEN=TOKEN,
               STICKTIONARY_BOTS=json.dumps([{"token": TOKEN, "name": "en"}]))
    result = subprocess.run([sys.executable, "-c", SCRIPT],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().split("\n")
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert len(records) == 5
    assert TOKEN not in result.stderr and TOKEN.split(":")[1] not in result.stderr
    assert KEY not in result.stderr and json.dumps(KEY)[1:-1] not in result.stderr and "nym" not in result.stderr
    started, seen, failed, after, multi = records
    assert started["level"] == "INFO" and started["logger"] == "bots.runtime" and "«redacted»" in started["message"]
    assert "bot" not in started and "update_id" not in started and started["time"].endswith("Z")
    assert (seen["bot"], seen["update_id"], seen.get("player_id")) == ("en", 812, None)
    assert (failed["bot"], failed["update_id"], failed["player_id"]) == ("en", 812, 17)
    assert failed["message"] == "update 812 failed" and "RuntimeError" in failed["exception"]
    assert "/bot«redacted»/sendMessage" in failed["exception"]
    assert after["bot"] == "zh" and "update_id" not in after and "player_id" not in after
    assert multi["message"].startswith("a multi-line\nmessage «redacted»")


def test_the_context_is_per_thread_and_ends_with_the_update():
    assert log_fields() == {}
    note_player(5)  # outside an update: nothing to attach it to
    assert log_fields() == {}
    seen = {}

    def other_thread():
        seen["other"] = log_fields()

    with handling_update("en", 1):
        note_player(9)
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert log_fields() == {"bot": "en", "update_id": 1, "player_id": 9}
        with handling_update("zh", 2, player_id=3):
            assert log_fields() == {"bot": "zh", "update_id": 2, "player_id": 3}
        assert log_fields()["bot"] == "en"
    assert log_fields() == {} and seen["other"] == {}


def test_the_formatter_redacts_what_the_filter_did_not_see():
    redactor = RedactingFilter([KEY])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(redactor))
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "plain", None, None)
    record.bot = f"en {TOKEN}"  # nonsense, but an `extra` value is not seen by the filter
    handler.handle(record)
    line = stream.getvalue()
    assert TOKEN not in line and json.loads(line)["bot"] == "en «redacted»"
