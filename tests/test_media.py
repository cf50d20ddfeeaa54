"""Grids of stickers: first frames of video (WEBM) and animated (TGS) stickers, the play mark, the
outline of the tile to notice, the size of a grid of one, and hostile files that must neither hang
nor crash the bot. Every media file is made here, on the fly: WEBM with PyAV, TGS as Lottie JSON."""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from bots.media import COLUMNS, HIGHLIGHT, PLACEHOLDER, PLAY_BACK, TILE, Media
from bots.media_frame import MAX_BYTES, MAX_SIDE, FrameDecoder, Job
from core.views import StickerView
from offline.demo_pack import PACK_DIR

RED = (220, 30, 30)
GREEN = (30, 180, 50)
BLUE = (40, 60, 220)


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def close(pixel, colour, tolerance=40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], colour, strict=True))


def make_webm(path: Path, colour, *, size=64, frames=4, blank_first=0, width=None) -> Path:
    """A VP9 video sticker (VP8 where PyAV has no libvpx-vp9): a coloured square on a transparent
    background, after `blank_first` fully transparent frames."""
    codec = "libvpx-vp9" if "libvpx-vp9" in av.codecs_available else "libvpx"
    with av.open(str(path), "w", format="webm") as out:
        stream = out.add_stream(codec, rate=30)
        stream.width, stream.height = width or size, size
        stream.pix_fmt = "yuva420p"
        for i in range(blank_first + frames):
            pixels = np.zeros((size, width or size, 4), np.uint8)
            if i >= blank_first:
                pixels[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = (*colour, 255)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgba")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def lottie(colour, *, width=512, height=512) -> dict:
    """A minimal Lottie animation: one shape layer, a filled square of 300 px in the middle."""
    static = lambda k: {"a": 0, "k": k}  # noqa: E731
    return {
        "v": "5.5.2", "fr": 60, "ip": 0, "op": 60, "w": width, "h": height, "nm": "square", "ddd": 0, "assets": [],
        "layers": [{
            "ddd": 0, "ind": 1, "ty": 4, "nm": "square", "sr": 1, "ao": 0, "ip": 0, "op": 60, "st": 0, "bm": 0,
            "ks": {"o": static(100), "r": static(0), "p": static([width / 2, height / 2, 0]),
                   "a": static([0, 0, 0]), "s": static([100, 100, 100])},
            "shapes": [{"ty": "gr", "nm": "group", "it": [
                {"ty": "rc", "nm": "rect", "d": 1, "s": static([300, 300]), "p": static([0, 0]), "r": static(0)},
                {"ty": "fl", "nm": "fill", "c": static([c / 255 for c in colour] + [1]), "o": static(100), "r": 1},
                {"ty": "tr", "p": static([0, 0]), "a": static([0, 0]), "s": static([100, 100]), "r": static(0),
                 "o": static(100), "sk": static(0), "sa": static(0)}]}],
        }],
    }


def make_tgs(path: Path, colour, **size) -> Path:
    path.write_bytes(gzip.compress(json.dumps(lottie(colour, **size)).encode()))
    return path


def make_png(path: Path, colour) -> Path:
    image = Image.new("RGBA", (128, 128), (0, 0, 0, 0))
    image.paste(Image.new("RGBA", (64, 64), (*colour, 255)), (32, 32))
    image.save(path)
    return path


def make_gif(path: Path, colours) -> Path:
    frames = [Image.new("RGB", (64, 64), colour) for colour in colours]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


@pytest.fixture
def root(tmp_path) -> Path:
    (tmp_path / "root" / "stickers").mkdir(parents=True)
    return tmp_path / "root"


def view(root: Path, name: str, number: int = 1) -> StickerView:
    assert (root / "stickers" / name).exists()
    return StickerView(number, name, f"stickers/{name}", name.rsplit(".", 1)[1])


def image_of(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def origin(n: int) -> tuple[int, int]:
    """The top left corner of tile n (1-based)."""
    return ((n - 1) % COLUMNS) * TILE, ((n - 1) // COLUMNS) * TILE


def centre(image: Image.Image, n: int):
    x, y = origin(n)
    return image.getpixel((x + TILE // 2, y + TILE // 2 + 6))


def has_play_mark(image: Image.Image, n: int) -> bool:
    x, y = origin(n)
    cx, cy = x + TILE - 22, y + TILE - 22
    return close(image.getpixel((cx - 12, cy)), _rgb(PLAY_BACK), 8) and image.getpixel((cx + 1, cy)) == (255, 255, 255)


def is_placeholder(image: Image.Image, n: int) -> bool:
    x, y = origin(n)
    return close(image.getpixel((x + TILE // 2 - 6, y + TILE // 2 + 6)), _rgb(PLACEHOLDER), 4)


def outlined(image: Image.Image, n: int) -> bool:
    x, y = origin(n)
    edges = [(x + 3, y + TILE // 2), (x + TILE - 4, y + TILE // 2), (x + TILE // 2, y + 3), (x + TILE // 2, y + TILE - 4)]
    return all(image.getpixel(p) == _rgb(HIGHLIGHT) for p in edges)


# ----------------------------------------------------------------------------------------- first frames
def test_webm_and_tgs_tiles_show_their_first_frame_with_a_play_mark(root, tmp_path):
    stickers = [view(root, make_webm(root / "stickers" / "1.webm", RED).name, 1),
                view(root, make_tgs(root / "stickers" / "2.tgs", GREEN).name, 2),
                view(root, make_png(root / "stickers" / "3.png", BLUE).name, 3)]
    image = image_of(Media(root, tmp_path / "cache").grid(stickers))
    assert image.size == (3 * TILE, TILE)
    assert close(centre(image, 1), RED) and close(centre(image, 2), GREEN) and close(centre(image, 3), BLUE)
    for n in (1, 2):
        assert has_play_mark(image, n) and not is_placeholder(image, n)
        x, y = origin(n)  # the video's and the animation's transparent corners show the white tile
        assert image.getpixel((x + 20, y + TILE // 2 + 6)) == (255, 255, 255)
    assert not has_play_mark(image, 3)  # a still sticker has none


def test_a_video_whose_first_frames_are_empty_shows_its_first_visible_frame(root, tmp_path):
    sticker = view(root, make_webm(root / "stickers" / "fade.webm", BLUE, blank_first=3).name)
    image = image_of(Media(root, tmp_path / "cache").grid([sticker]))
    assert close(centre(image, 1), BLUE)


def test_an_animated_gif_gets_a_play_mark_and_a_still_one_does_not(root, tmp_path):
    moving = view(root, make_gif(root / "stickers" / "m.gif", [RED, GREEN]).name, 1)
    still = view(root, make_gif(root / "stickers" / "s.gif", [GREEN]).name, 2)
    image = image_of(Media(root, tmp_path / "cache").grid([moving, still]))
    assert close(centre(image, 1), RED) and has_play_mark(image, 1)
    assert close(centre(image, 2), GREEN) and not has_play_mark(image, 2)


def test_first_frames_are_decoded_once_and_cached_on_disk(root, tmp_path, monkeypatch):
    stickers = [view(root, make_webm(root / "stickers" / "1.webm", RED).name, 1),
                view(root, make_tgs(root / "stickers" / "2.tgs", GREEN).name, 2)]
    first = Media(root, tmp_path / "cache")
    first.grid(stickers)
    assert len(list((tmp_path / "cache" / "frames").glob("*.png"))) == 2

    def never(jobs):
        raise AssertionError(f"decoded again: {jobs}")

    again = Media(root, tmp_path / "cache")  # a restarted bot: nothing in memory
    monkeypatch.setattr(again.decoder, "decode", never)
    image = image_of(again.grid(list(reversed(stickers)), highlight=1))  # another grid of the same stickers
    assert close(centre(image, 1), GREEN) and close(centre(image, 2), RED)


# ----------------------------------------------------------------------------------------- layout
def test_the_highlighted_tile_is_outlined_and_no_other(root, tmp_path):
    stickers = [view(root, make_png(root / "stickers" / f"{n}.png", BLUE).name, n) for n in range(1, 6)]
    media = Media(root, tmp_path / "cache")
    image = image_of(media.grid(stickers, highlight=4))
    assert outlined(image, 4)
    assert not any(outlined(image, n) for n in (1, 2, 3, 5))
    plain = image_of(media.grid(stickers))  # the same stickers without a highlight: another image, not the cached one
    assert not any(outlined(plain, n) for n in range(1, 6))
    assert not any(outlined(image_of(media.grid(stickers, highlight=h)), n) for h in (0, 6) for n in range(1, 6))


@pytest.mark.parametrize(("count", "size"), [(1, (TILE, TILE)), (2, (2 * TILE, TILE)), (3, (3 * TILE, TILE)),
                                             (4, (3 * TILE, 2 * TILE)), (9, (3 * TILE, 3 * TILE))])
def test_a_grid_is_only_as_wide_as_its_stickers(root, tmp_path, count, size):
    colours = [RED, GREEN, BLUE]
    stickers = [view(root, make_png(root / "stickers" / f"{n}.png", colours[n % 3]).name, n) for n in range(count)]
    image = image_of(Media(root, tmp_path / "cache").grid(stickers, highlight=1 if count == 1 else None))
    assert image.size == size
    for n in range(1, count + 1):  # tile n is stickers[n-1]
        assert close(centre(image, n), colours[(n - 1) % 3])
    if count == 1:
        assert outlined(image, 1)


def test_the_shipped_demo_pack_still_renders(tmp_path):
    files = sorted((PACK_DIR / "stickers").iterdir())
    stickers = [StickerView(n, f.name, f"stickers/{f.name}", f.suffix[1:]) for n, f in enumerate(files[:9], 1)]
    assert any(s.format == "gif" for s in stickers)
    media = Media(PACK_DIR, tmp_path / "cache")
    image = image_of(media.grid(stickers, highlight=2))
    assert image.size == (3 * TILE, 3 * TILE) and outlined(image, 2)
    for n, sticker in enumerate(stickers, 1):
        assert media._first_frame(sticker) is not None and not is_placeholder(image, n)
        assert has_play_mark(image, n) == (sticker.format == "gif")  # the pack's GIFs have four frames


# ----------------------------------------------------------------------------------------- hostile files
def test_files_that_cannot_be_decoded_fall_back_quickly_and_are_logged_once(root, tmp_path, caplog):
    good = make_webm(root / "stickers" / "good.webm", RED)
    stickers_dir = root / "stickers"
    (stickers_dir / "cut.webm").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    (stickers_dir / "noise.webm").write_bytes(b"\x1a\x45\xdf\xa3" + os.urandom(3000))
    with (stickers_dir / "big.webm").open("wb") as f:  # over the preview's limit: never opened by a decoder
        f.write(good.read_bytes())
        f.truncate(MAX_BYTES["webm"] + 1)
    make_webm(stickers_dir / "wide.webm", RED, size=16, frames=1, width=MAX_SIDE + 8)  # not a sticker's size
    make_tgs(stickers_dir / "whole.tgs", GREEN)
    (stickers_dir / "cut.tgs").write_bytes((stickers_dir / "whole.tgs").read_bytes()[:40])
    (stickers_dir / "text.tgs").write_bytes(gzip.compress(b'{"layers": [1, 2, "not lottie"], "w": 512'))
    (stickers_dir / "odd.tgs").write_bytes(gzip.compress(b'{"layers": [1, {"ty": 4}, "x"], "w": 512, "h": 512}'))
    (stickers_dir / "huge.tgs").write_bytes(gzip.compress(json.dumps(lottie(GREEN, width=10**6, height=10**6)).encode()))
    (stickers_dir / "bomb.tgs").write_bytes(gzip.compress(b"{" + b" " * (17 * 2**20) + b"}"))
    (stickers_dir / "empty.tgs").write_bytes(b"")
    names = ["cut.webm", "noise.webm", "big.webm", "wide.webm", "cut.tgs", "text.tgs", "odd.tgs", "huge.tgs", "bomb.tgs",
             "empty.tgs", "good.webm"]
    stickers = [view(root, name, n) for n, name in enumerate(names, 1)]
    media = Media(root, tmp_path / "cache")
    caplog.set_level(logging.WARNING, logger="bots.media")
    started = time.monotonic()
    image = image_of(media.grid(stickers))
    assert time.monotonic() - started < 30
    for n in range(1, 11):
        assert is_placeholder(image, n) and has_play_mark(image, n), names[n - 1]
    assert close(centre(image, 11), RED) and has_play_mark(image, 11)
    logged = [r.getMessage() for r in caplog.records if r.name == "bots.media"]
    assert len(logged) == 10 and all(any(name in line for line in logged) for name in names[:10])

    caplog.clear()  # a bad file stays bad: not decoded nor logged again, even by a restarted bot
    again = Media(root, tmp_path / "cache")
    again.decoder.decode = lambda jobs: pytest.fail(f"decoded again: {jobs}")
    image = image_of(again.grid(list(reversed(stickers))))
    assert is_placeholder(image, 2) and close(centre(image, 1), RED) and not caplog.records


FAKE_DECODER = """
import json, os, signal, sys, time
from PIL import Image
for line in sys.stdin:
    job = json.loads(line)
    name = os.path.basename(job["source"])
    if name.startswith("hang"):
        time.sleep(60)
    if name.startswith("crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    Image.new("RGBA", (8, 8), (1, 2, 3, 255)).save(job["out"])
    print("ok", flush=True)
"""


def test_a_decoder_that_hangs_or_crashes_fails_only_its_file(tmp_path):
    decoder = FrameDecoder(per_file=1.0, startup=2.0, command=[sys.executable, "-c", FAKE_DECODER])
    jobs = [Job(tmp_path / name, "webm", tmp_path / f"{name}.png", 64)
            for name in ("a", "hang-b", "c", "crash-d", "e")]
    started = time.monotonic()
    results = decoder.decode(jobs)
    assert time.monotonic() - started < 15
    assert results[tmp_path / "a.png"] is None and results[tmp_path / "c.png"] is None
    assert results[tmp_path / "e.png"] is None and (tmp_path / "e.png").exists()
    assert results[tmp_path / "hang-b.png"].startswith("timed out")
    assert results[tmp_path / "crash-d.png"] == "the decoder died (signal 11)"


def test_a_grid_survives_a_decoder_that_hangs(root, tmp_path, caplog):
    sticker = view(root, make_webm(root / "stickers" / "hang.webm", RED).name)
    media = Media(root, tmp_path / "cache")
    media.decoder = FrameDecoder(per_file=0.5, startup=0.5, command=[sys.executable, "-c", FAKE_DECODER])
    started = time.monotonic()
    image = image_of(media.grid([sticker]))
    assert time.monotonic() - started < 10
    assert image.size == (TILE, TILE) and is_placeholder(image, 1) and has_play_mark(image, 1)
    assert any("timed out" in r.getMessage() for r in caplog.records)
    assert not list((tmp_path / "cache" / "frames").glob("*.fail"))  # a time-out may be the machine: tried again later



@pytest.mark.asyncio
async def test_the_runtime_passes_the_tile_to_outline_to_the_grid(root, tmp_path):
    """A SendGrid's `highlight` reaches Media.grid (the preview outlines the labeler's own sticker)."""
    from types import SimpleNamespace

    from bots.delivery import DeliveryContext
    from bots.delivery.replies import deliver_reply
    from bots.game_threads import GameThreads
    from bots.messages.replies import Outgoing, SendGrid
    from bots.transport import SendPolicy

    stickers = [view(root, make_png(root / "stickers" / f"{n}.png", BLUE).name, n) for n in range(1, 4)]
    sent = []

    async def send_photo(chat, image, filename, caption, buttons):
        sent.append(image_of(image))

    context = DeliveryContext("main", SimpleNamespace(send_photo=send_photo), SendPolicy("main", None),
                              Media(root, tmp_path / "cache"), None, GameThreads())
    reply = SendGrid(stickers, "“so sick of this”: #2 of 52", highlight=2)
    await deliver_reply(context, Outgoing(chat_id=1, replies=[reply]), reply)
    assert len(sent) == 1 and outlined(sent[0], 2) and not outlined(sent[0], 1)
