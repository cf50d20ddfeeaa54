"""The researchers' pull: the HTTP endpoint (real HTTP on loopback) and the `export pull` client."""

from __future__ import annotations

import asyncio
import json
import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiohttp import web

from core.exports import run_export
from jobs.pull_client import PullError, pull
from jobs.pull_server import make_app
from storage.db import session_scope
from storage.export_files import PARTIAL_PREFIX, read_manifest, sha256_file
from storage.models import Query, QuerySource, QueryStatus
from tests.helpers import make_world

TOKEN = "researcher-token-0123456789"
MOMENT = datetime(2026, 11, 30, 3, tzinfo=UTC)


@contextmanager
def serving(app: web.Application):
    """Run an aiohttp app on a free loopback port in a thread of its own; yields its base URL."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state = {}

    async def start():
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["runner"] = runner
        state["port"] = runner.addresses[0][1]
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield f"http://127.0.0.1:{state['port']}"
    finally:
        asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture
def exported(db, settings):
    make_world(db, settings, stickers=30, languages=("en", "zh"))
    first = run_export(db, settings, now=MOMENT)
    return settings, first


@pytest.fixture
def server(exported):
    settings, _ = exported
    with serving(make_app(settings.exports.export_dir, [TOKEN, "another-token"])) as base:
        yield base


def _auth(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": "Bearer"}])
def test_the_endpoint_refuses_a_missing_or_wrong_token(server, headers):
    for path in ("/exports", "/exports/latest/manifest.json"):
        response = httpx.get(server + path, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "sticker" not in response.text


def test_listing_etag_and_ranges(server, exported):
    settings, first = exported
    listing = httpx.get(server + "/exports", headers=_auth()).json()
    assert listing["latest"] == first.version and [e["version"] for e in listing["exports"]] == [first.version]

    url = f"{server}/exports/{first.version}/sticker_queries_en_release.csv"
    full = httpx.get(url, headers=_auth("another-token"))
    assert full.status_code == 200
    assert full.content == (first.folder / "sticker_queries_en_release.csv").read_bytes()
    etag = full.headers["ETag"]
    assert httpx.get(url, headers={**_auth(), "If-None-Match": etag}).status_code == 304
    part = httpx.get(url, headers={**_auth(), "Range": "bytes=10-29"})
    assert part.status_code == 206 and part.content == full.content[10:30]

    latest = httpx.get(f"{server}/exports/latest/manifest.json", headers=_auth())
    assert latest.json()["version"] == first.version and latest.headers["Cache-Control"] == "no-cache"
    for bad in (f"/exports/{first.version}/beir/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/exports/nope/manifest.json",
                f"/exports/{first.version}/missing.csv", f"/exports/{PARTIAL_PREFIX}x/manifest.json"):
        assert httpx.get(server + bad, headers=_auth()).status_code == 404


def test_pull_downloads_verifies_and_then_only_what_changed(db, server, exported, tmp_path):
    settings, first = exported
    dest = tmp_path / "mirror"
    result = pull(server, TOKEN, dest)
    manifest = read_manifest(first.folder)
    assert result["version"] == first.version and result["downloaded"] == len(manifest["files"])
    for entry in manifest["files"]:
        assert sha256_file(dest / first.version / entry["path"]) == entry["sha256"]
    assert (dest / "latest").resolve() == (dest / first.version).resolve()

    assert pull(server, TOKEN, dest)["up_to_date"] is True  # If-None-Match: 304

    # A new export where only some files changed: the others are linked from the local copy.
    with session_scope(db) as session:
        session.add(Query(sticker_id=1, language="zh", text="新的搜索词", normalized_text="新的搜索词",
                          source=QuerySource.SEED, status=QueryStatus.VALIDATED))
    second = run_export(db, settings, now=MOMENT + timedelta(days=1))
    again = pull(server, TOKEN, dest)
    assert again["version"] == second.version
    old = {e["sha256"] for e in manifest["files"]}
    new = read_manifest(second.folder)["files"]
    assert again["downloaded"] == sum(e["sha256"] not in old for e in new)
    assert again["linked"] == sum(e["sha256"] in old for e in new) > 0  # e.g. the English files


def test_pull_resumes_a_partial_file(server, exported, tmp_path):
    settings, first = exported
    dest = tmp_path / "mirror"
    name = "queries.jsonl"
    whole = (first.folder / name).read_bytes()
    (dest / first.version).mkdir(parents=True)
    (dest / first.version / f"{name}.part").write_bytes(whole[: len(whole) // 2])
    result = pull(server, TOKEN, dest)
    assert result["resumed"] == 1
    assert (dest / first.version / name).read_bytes() == whole
    assert not (dest / first.version / f"{name}.part").exists()


def test_pull_rejects_a_corrupted_file(server, exported, tmp_path):
    settings, first = exported
    # The server's copy goes bad after the manifest was written (a disk error, a tampered mirror).
    target = first.folder / "sticker_queries_zh_release.csv"
    target.write_bytes(target.read_bytes().replace(b",", b";", 1))
    dest = tmp_path / "mirror"
    with pytest.raises(PullError, match="sha256"):
        pull(server, TOKEN, dest)
    assert not (dest / first.version / "sticker_queries_zh_release.csv").exists()
    assert not (dest / first.version / "sticker_queries_zh_release.csv.part").exists()
    assert not (dest / first.version / "manifest.json").exists()  # the local copy is not marked complete


def test_pull_with_a_wrong_token_says_so(server, tmp_path):
    with pytest.raises(PullError, match="token"):
        pull(server, "wrong", tmp_path / "mirror")


def test_pull_command_line(server, exported, tmp_path):
    from typer.testing import CliRunner

    from sticktionary.cli import app

    result = CliRunner().invoke(app, ["export", "pull", server, "--token", TOKEN, "--dest", str(tmp_path / "m"),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["version"] == exported[1].version
    refused = CliRunner().invoke(app, ["export", "pull", server, "--token", "nope", "--dest", str(tmp_path / "n"),
                                       "--no-progress"])
    assert refused.exit_code == 1 and "token" in refused.output


def test_malformed_requests_get_a_400_and_ranges_follow_rfc_9110(server, exported):
    settings, first = exported
    url = f"{server}/exports/{first.version}/sticker_queries_en_release.csv"
    whole = (first.folder / "sticker_queries_en_release.csv").read_bytes()
    assert httpx.get(url, headers={"Authorization": b"Bearer \xff\xfe"}).status_code == 400
    for bad in (f"/exports/{first.version}/%00", f"/exports/{first.version}/a%00b.csv", "/exports/%00/manifest.json",
                f"/exports/{first.version}/" + "x" * 6000, f"/exports/{first.version}/" + "y/" * 2000 + "z",
                f"/exports/{first.version}/a%5Cb", f"/exports/{first.version}/%ff%fe"):
        response = httpx.get(server + bad, headers=_auth())
        assert response.status_code in (400, 404), (bad[:80], response.status_code)
    assert httpx.get(f"{server}/exports/{first.version}/%00", headers=_auth()).status_code == 400
    assert httpx.get(f"{server}/exports/{first.version}/" + "x" * 6000, headers=_auth()).status_code == 400

    etag = httpx.get(url, headers=_auth()).headers["ETag"]
    ranged = {**_auth(), "Range": "bytes=0-9"}
    # If-Range with this file's ETag: the range; with another ETag, or a date it does not match: the whole file
    assert httpx.get(url, headers={**ranged, "If-Range": etag}).status_code == 206
    for other in ('"another-etag"', 'W/' + etag, "Tue, 01 Jan 2008 00:00:00 GMT", "not a date"):
        response = httpx.get(url, headers={**ranged, "If-Range": other})
        assert response.status_code == 200 and response.content == whole, other
    # bytes=-0 and a start past the end cannot be satisfied; what is not one byte range is ignored
    for unsatisfiable in ("bytes=-0", f"bytes={len(whole)}-", f"bytes={len(whole) + 5}-{len(whole) + 9}"):
        response = httpx.get(url, headers={**_auth(), "Range": unsatisfiable})
        assert response.status_code == 416 and response.headers["Content-Range"] == f"bytes */{len(whole)}"
    for ignored in ("bytes=5-1", "bytes=0-1,4-5", "items=0-5", "bytes=", "bytes=-", "bytes=" + "9" * 40 + "-"):
        response = httpx.get(url, headers={**_auth(), "Range": ignored})
        assert response.status_code == 200 and response.content == whole, ignored
    suffix = httpx.get(url, headers={**_auth(), "Range": "bytes=-5"})
    assert suffix.status_code == 206 and suffix.content == whole[-5:]
