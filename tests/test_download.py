"""download-usticker against a local HTTP server that speaks the Hub's tree API and Range requests."""

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from storage.download import DownloadError, download_usticker

FILES = {"01.json": b'[{"message_id": 1, "text": "hi"}]' * 50, "stickers/9.png": bytes(range(256)) * 40}


def _tree(files):
    entries = []
    for path, data in files.items():
        if path.endswith(".png"):  # an LFS file: checked by sha256
            entries.append({"type": "file", "path": path, "size": 130,
                            "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}})
        else:  # a plain git file: checked by its blob id
            oid = hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()
            entries.append({"type": "file", "path": path, "size": len(data), "oid": oid})
    return entries


@pytest.fixture
def hub():
    state = {"served": dict(FILES), "ranges": [], "cut_after": None}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path.startswith("/api/datasets/metchee/u-sticker/tree/main"):
                body = json.dumps(_tree(FILES)).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            prefix = "/datasets/metchee/u-sticker/resolve/main/"
            data = state["served"].get(self.path[len(prefix):])
            if data is None:
                self.send_error(404)
                return
            start = 0
            if "Range" in self.headers:
                start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                state["ranges"].append(start)
            body = data[start:]
            if state["cut_after"] is not None:
                body = body[: state["cut_after"]]
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", state
    server.shutdown()


def test_downloads_checks_hashes_and_skips_what_is_already_there(tmp_path, hub):
    endpoint, _state = hub
    counts = download_usticker(tmp_path, endpoint=endpoint, progress=False)
    assert counts["downloaded"] == 2
    for path, data in FILES.items():
        assert (tmp_path / path).read_bytes() == data
    again = download_usticker(tmp_path, endpoint=endpoint, progress=False)
    assert again["skipped"] == 2 and again["downloaded"] == 0


def test_a_partial_file_is_resumed_with_a_range_request(tmp_path, hub):
    endpoint, state = hub
    (tmp_path / "stickers").mkdir()
    (tmp_path / "stickers" / "9.png.part").write_bytes(FILES["stickers/9.png"][:1000])
    counts = download_usticker(tmp_path, endpoint=endpoint, progress=False)
    assert counts["resumed"] == 1 and 1000 in state["ranges"]
    assert (tmp_path / "stickers" / "9.png").read_bytes() == FILES["stickers/9.png"]


def test_corrupted_content_is_rejected_and_removed(tmp_path, hub):
    endpoint, state = hub
    state["served"]["stickers/9.png"] = b"\0" * len(FILES["stickers/9.png"])
    with pytest.raises(DownloadError, match="hash"):
        download_usticker(tmp_path, endpoint=endpoint, progress=False)
    assert not (tmp_path / "stickers" / "9.png").exists()
    assert not (tmp_path / "stickers" / "9.png.part").exists()
