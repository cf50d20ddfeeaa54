"""Edges that hostile input reaches: one test per character class for the normaliser, Telegram's
limits on rendered screens and in the sandbox, settings, secrets in logs, and the media cache."""

from __future__ import annotations

import io
import json
import logging
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from bots.media import Media
from bots.messages.catalogue import catalogue
from bots.messages.limits import CAPTION_LIMIT, TEXT_LIMIT, shorten, utf16_units
from bots.messages.replies import SendGrid, SendText
from bots.screens import label, retrieval
from bots.screens.task import NOTICE_ROOM, Progress
from core.text import QueryTextError, clean_query_text, normalize_query, seed_query_problem
from core.views import ContextMessage, LabelTaskView, RetrievalTaskView, StickerView
from offline.demo_pack import PACK_DIR
from offline.sandbox import Sandbox
from sticktionary.logs import MASK, RedactingFilter, protect
from storage.media_check import StickerFileError, check_sticker_file
from storage.settings import SettingsProblem, load_settings


# ---------------------------------------------------------------- the normaliser, class by class
@pytest.mark.parametrize("invisible", ["\u00ad", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202a", "\u202b",
                                       "\u202c", "\u202d", "\u202e", "\u2060", "\u2061", "\u2062", "\u2063", "\u2064",
                                       "\ufeff", "\U000e0001", "\U000e0041", "\U000e007f", "\u2066", "\u2069"])
def test_invisible_format_characters_are_removed_before_the_taboo_check(invisible):
    assert clean_query_text(f"s{invisible}mirk", max_chars=64) == "smirk"
    assert clean_query_text(f"{invisible}innocent{invisible}", max_chars=64) == "innocent"
    assert normalize_query(f"S{invisible}MIRK!") == normalize_query("smirk")


@pytest.mark.parametrize("compatible,plain", [("ｓｍｉｒｋ", "smirk"), ("ﬁne", "fine"), ("①", "1"),
                                              ("e\u0301", "\u00e9"), ("\u3000hi\u00a0there", "hi there")])
def test_nfkc_folds_compatibility_forms(compatible, plain):
    assert clean_query_text(compatible, max_chars=64) == plain


@pytest.mark.parametrize("control", ["\x00", "\x07", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\u2028", "\u2029"])
def test_control_characters_and_line_breaks_are_refused(control):
    with pytest.raises(QueryTextError) as error:
        clean_query_text(f"one{control}two", max_chars=64)
    assert error.value.code == "control_chars" and error.value.detail == f"U+{ord(control):04X}"


@pytest.mark.parametrize("surrogate", ["\ud800", "\udbff", "\udc00", "\udfff"])
def test_lone_surrogates_are_refused_with_their_own_reason(surrogate):
    with pytest.raises(QueryTextError) as error:
        clean_query_text(f"broken {surrogate} emoji", max_chars=64)
    assert error.value.code == "invalid_chars"


def test_length_is_checked_after_normalisation_and_the_detail_is_the_limit_alone():
    assert clean_query_text("a\u200b" * 60, max_chars=64) == "a" * 60
    with pytest.raises(QueryTextError) as error:
        clean_query_text("ﷺ" * 4, max_chars=64)  # NFKC makes each of these 18 characters
    assert error.value.code == "too_long" and error.value.args[0] == "64"


@pytest.mark.parametrize("query,problem", [
    ("", "an empty query"), (" ", "an empty query"), (",", "separators"), ("x" * 257, "longer than 256"),
    ("tab\there", "U+0009"), ("nul\x00", "U+0000"), ("s\u2060mirk", "U+2060"), ("\u202eevil", "U+202E"),
    (" padded", "a space at the start or end"),
])
def test_seed_queries_are_checked_not_rewritten(query, problem):
    assert problem in seed_query_problem(query)


@pytest.mark.parametrize("fine", [":(", "？？？", "\U0001F468\u200d\U0001F469\u200d\U0001F467", "ＬＯＬ", "thumbs up 👍🏻"])
def test_real_seed_queries_pass_as_they_are(fine):
    assert seed_query_problem(fine) is None


# ---------------------------------------------------------------- screens within Telegram's limits
STICKER = StickerView(1, "1.png", "stickers/1.png", "png")


def test_shorten_counts_utf16_units_and_never_splits_a_character():
    assert shorten("😂" * 3000, 4096) == "😂" * 2047 + "…"
    assert utf16_units(shorten("😂" * 3000, 4096)) == 4095
    assert shorten("abcdef", 4, keep="end") == "…def"
    assert shorten("x\ud800y", 10) == "x\ufffdy"


def test_the_label_screen_fits_and_keeps_the_question_whatever_the_context():
    # the progress line as long as it can get
    progress = Progress(10**12 + 1, streak=10**9, points=10**12)
    t = catalogue("en")
    huge = [ContextMessage("A", "word " * 1196), ContextMessage("B", "😂" * 3000 + " the latest message")]
    for notice in (None, "🎉" * (NOTICE_ROOM // 2)):  # held feedback heads the screen: the context makes room
        replies = label.screen(LabelTaskView(7, "en", STICKER, huge), progress, t, notice=notice)
        text = replies[0].text
        assert utf16_units(text) <= TEXT_LIMIT and text.endswith(t("label_prompt"))
        assert "…" in text and "the latest message" in text  # the start is cut, the newest words stay
        assert notice is None or text.startswith(notice)


def test_the_retrieval_caption_fits_with_1000_character_seed_queries_and_keeps_the_ranking():
    t = catalogue("en")
    task = RetrievalTaskView(5, "en", ["q" * 1000] * 10, [StickerView(i, f"{i}.png", f"s/{i}.png", "png")
                                                         for i in range(1, 10)], picks=[3, 1])
    caption = retrieval.caption(task, t)
    assert utf16_units(caption) <= CAPTION_LIMIT - NOTICE_ROOM
    assert caption.endswith(t("ranking", ranking="#1→3  #2→1")) and caption.count("…") >= 10


def test_every_reply_is_cut_to_size_and_keyboards_to_telegrams_shape():
    rows = [[(f"label {n} " * 20, f"pk:1:{n}") for n in range(1, 13)] for _ in range(12)]
    reply = SendText("x" * 10_000, rows)
    assert len(reply.text) == TEXT_LIMIT and reply.text.endswith("…")
    assert all(len(row) <= 8 for row in reply.buttons) and sum(map(len, reply.buttons)) == 100
    assert all(utf16_units(label) <= 64 for row in reply.buttons for label, _ in row)
    assert SendText("   ").text == "…"
    assert len(SendGrid([], "y" * 5000).caption) == CAPTION_LIMIT
    with pytest.raises(ValueError):
        SendText("hi", [[("too long", "z" * 65)]])


@pytest.mark.asyncio
async def test_the_sandbox_refuses_what_telegram_refuses():
    sandbox = Sandbox(rate_limits=False)
    sandbox.add_bot("1:t", "b")
    base = await sandbox.start()
    sandbox.user_message("1:t", 5, text="hi")
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            async def send(**params) -> int:
                body = json.dumps({"chat_id": 5, **params})  # json.dumps escapes lone surrogates, as clients do
                response = await client.post("/bot1:t/sendMessage", content=body,
                                             headers={"Content-Type": "application/json"})
                return response.status_code

            def keyboard(rows, per_row, data="a"):
                return {"inline_keyboard": [[{"text": "b", "callback_data": data}] * per_row] * rows}

            assert await send(text="ok") == 200
            assert await send(text="😂" * 2049) == 400  # 4,098 UTF-16 units
            assert await send(text="😂" * 2048) == 200
            assert await send(text=" ") == 400
            assert await send(text="broken \ud800") == 400
            assert await send(text="k", reply_markup=keyboard(1, 9)) == 400
            assert await send(text="k", reply_markup=keyboard(13, 8)) == 400
            assert await send(text="k", reply_markup=keyboard(12, 8)) == 200
            assert await send(text="k", reply_markup=keyboard(1, 1, "x" * 65)) == 400
            assert await send(text="k", reply_markup=keyboard(1, 1, "é" * 33)) == 400  # 66 bytes
            assert await send(text="k", reply_markup={"inline_keyboard": [[{"text": " ", "callback_data": "a"}]]}) \
                == 400
    finally:
        await sandbox.stop()


# ---------------------------------------------------------------- settings
@pytest.mark.parametrize("value,expected", [("12345", [12345]), ("1,2,3", [1, 2, 3]), (" 1, 2 ", [1, 2]),
                                            ("[4, 5]", [4, 5]), ("", [])])
def test_list_settings_accept_one_value_commas_and_json(monkeypatch, value, expected):
    monkeypatch.setenv("STICKTIONARY_MODERATORS", value)
    assert load_settings(_env_file=None).telegram.moderators == expected


@pytest.mark.parametrize("name,value", [("STICKTIONARY_MODERATORS", "abc"), ("STICKTIONARY_MODERATORS", "[1,"),
                                        ("STICKTIONARY_BOTS", '{"token": "123:secret-value"'),
                                        ("STICKTIONARY_BOTS", '[{"token": "123:secret-value", "framework": "x"}]'),
                                        ("STICKTIONARY_LEADERBOARD_CHATS", "nope")])
def test_a_wrong_setting_is_one_line_with_an_example_and_no_secret(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsProblem) as problem:
        load_settings(_env_file=None)
    message = str(problem.value)
    assert "\n" not in message and message.startswith(name) and "for example" in message
    assert "secret-value" not in message


def test_a_wrong_setting_stops_the_command_line_in_one_line(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "sticktionary.cli", "jobs", "list"], capture_output=True, text=True,
                            cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "STICKTIONARY_BOTS": "[{broken",
                                               "PYTHONPATH": str(PACK_DIR.parent.parent)}, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("the settings are not valid: STICKTIONARY_BOTS is not valid")
    assert len(result.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- secrets in logs
def test_the_redacting_filter_masks_tokens_in_messages_arguments_and_tracebacks():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(["s3cret-pull-token"]))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("HTTP Request: POST %s", "https://api.telegram.org/bot1001:demo-en/getUpdates")
        logger.warning("got %s from the researcher", "s3cret-pull-token")
        logger.warning("a real-looking token 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw in text")
        try:
            raise RuntimeError("failed: https://api.telegram.org/file/bot42:abc/x.png")
        except RuntimeError:
            logger.exception("download failed")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    for secret in ("1001:demo-en", "s3cret-pull-token", "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "42:abc"):
        assert secret not in output
    assert output.count(MASK) == 4 + 1  # the traceback's message too


def test_the_redacting_filter_leaves_paths_that_only_look_like_bot_paths():
    redact = RedactingFilter().redact
    line = 'File "/work/main/bots/runtime.py", line 3, in /bot/about/ and /botany/x'
    assert redact(line) == line
    assert redact("GET /bot7:sandbox-token/getMe") == f"GET /bot{MASK}/getMe"


def test_protect_quiets_the_http_clients_loggers():
    protect()
    for name in ("httpx", "httpcore"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO)


# ---------------------------------------------------------------- media
def test_concurrent_conversions_of_one_sticker_all_succeed(tmp_path):
    from PIL import Image

    root = tmp_path / "root"
    (root / "stickers").mkdir(parents=True)
    Image.new("RGBA", (48, 48), (200, 30, 30, 255)).save(root / "stickers" / "7.png")  # small: quick to convert
    sticker = StickerView(1, "7.png", "stickers/7.png", "png")
    outcomes = []
    for attempt in range(3):
        media = Media(root, tmp_path / f"cache-{attempt}")
        with ThreadPoolExecutor(40) as pool:
            outcomes += list(pool.map(lambda _, media=media: media.sticker_file(sticker).data, range(40)))
        assert not [p for p in (tmp_path / f"cache-{attempt}").iterdir() if p.name.endswith(".tmp")]
    assert len(outcomes) == 120 and len(set(outcomes)) == 1 and outcomes[0][:4] == b"RIFF"


def test_media_never_reads_outside_the_sticker_folder(tmp_path):
    media = Media(tmp_path / "root", tmp_path / "cache")
    with pytest.raises(FileNotFoundError):
        media.sticker_file(StickerView(1, "passwd.gif", "../" * 30 + "etc/passwd", "gif"))


def test_sticker_files_are_checked_by_content(tmp_path):
    png = next(p for p in sorted((PACK_DIR / "stickers").iterdir()) if p.suffix == ".png")
    gif = next(p for p in sorted((PACK_DIR / "stickers").iterdir()) if p.suffix == ".gif")
    check_sticker_file(png, "png")
    check_sticker_file(gif, "gif")
    truncated = tmp_path / "t.png"
    truncated.write_bytes(png.read_bytes()[:200])
    cases = {"png": [gif, truncated], "gif": [png], "webp": [png], "webm": [png], "tgs": [png]}
    for fmt, files in cases.items():
        for path in files:
            with pytest.raises(StickerFileError):
                check_sticker_file(path, fmt)
    empty = tmp_path / "e.png"
    empty.write_bytes(b"")
    with pytest.raises(StickerFileError, match="empty"):
        check_sticker_file(empty, "png")
