"""Sticker files as Telegram wants them, and numbered candidate grids composed with Pillow.

sendSticker takes WEBP, TGS or WEBM: PNG is converted to WEBP; GIF goes out as an animation.
Grids show the first frame of every sticker: Pillow reads PNG, WEBP and GIF here; the first
frames of WEBM (PyAV) and TGS (rlottie) stickers are decoded in a child process with bounds
(bots/media_frame.py) and cached on disk as PNG, so each file is decoded once. Moving stickers get
a small play mark; one that cannot be decoded gets a placeholder tile. Converted files and grids
are cached on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from bots.media_frame import FrameDecoder, Job
from core.views import StickerView

log = logging.getLogger(__name__)

TILE = 160
FRAME = TILE - 24  # the picture inside a tile, which leaves room for the number
COLUMNS = 3
GRID_VERSION = 2  # in the cached grids' names: grids drawn by an older version are not reused
MOVING = ("webm", "tgs")  # decoded in a child process (bots/media_frame.py)
HIGHLIGHT = "#ff8c00"  # the outline of the tile to notice (the labeler's own sticker)
HIGHLIGHT_WIDTH = 6
PLACEHOLDER = "#b0b0b0"
PLAY_BACK = "#3a3a3a"


@dataclass(frozen=True)
class StickerFile:
    filename: str
    data: bytes


class Media:
    def __init__(self, sticker_root: Path, cache_dir: Path):
        self.sticker_root = Path(sticker_root)
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.frame_dir = self.cache_dir / "frames"  # first frames of WEBM and TGS stickers, as PNG
        self.frame_dir.mkdir(exist_ok=True)
        self.decoder = FrameDecoder()
        self._tiles: dict[str, Image.Image | None] = {}  # first frames, already scaled to a tile
        self._animated: dict[str, bool] = {}  # GIF and WEBP: more than one frame?

    def _path(self, sticker: StickerView) -> Path:
        """The sticker's file, which must lie inside the sticker folder (the importers check this
        too; a row written another way must not make the bot read and upload any file)."""
        root = self.sticker_root.resolve()
        path = (root / sticker.file_path).resolve()
        if not path.is_relative_to(root):
            raise FileNotFoundError(f"sticker {sticker.key}: its path leads outside the sticker folder")
        return path

    def sticker_file(self, sticker: StickerView) -> StickerFile:
        path = self._path(sticker)
        stem = Path(sticker.key).stem
        if sticker.format == "gif":
            return StickerFile(f"{stem}.gif", path.read_bytes())
        if sticker.format in ("webp", "webm", "tgs"):
            return StickerFile(f"{stem}.{sticker.format}", path.read_bytes())
        cached = self.cache_dir / f"{stem}.webp"
        try:
            return StickerFile(f"{stem}.webp", cached.read_bytes())
        except FileNotFoundError:
            pass
        with Image.open(path) as image:
            image = image.convert("RGBA")
            image.thumbnail((512, 512))  # Telegram stickers are at most 512 px a side
            buffer = io.BytesIO()
            image.save(buffer, "WEBP", lossless=True)
        _atomic_write(cached, buffer.getvalue())
        return StickerFile(f"{stem}.webp", buffer.getvalue())

    def grid(self, stickers: list[StickerView], highlight: int | None = None) -> bytes:
        """Tile n shows stickers[n-1] with its number; `highlight` (1-based) gets a coloured outline.
        One sticker is one square tile, two a strip of two, more rows of three."""
        if highlight is not None and not 1 <= highlight <= len(stickers):
            highlight = None
        key = hashlib.sha1(("|".join(s.key for s in stickers) + f"#{highlight}").encode(),
                           usedforsecurity=False).hexdigest()
        cached = self.cache_dir / f"grid{GRID_VERSION}-{key}.png"
        try:
            return cached.read_bytes()
        except FileNotFoundError:
            pass
        self._decode_moving(stickers)
        columns = max(1, min(len(stickers), COLUMNS))
        rows = (len(stickers) + COLUMNS - 1) // COLUMNS
        canvas = Image.new("RGB", (columns * TILE, max(rows, 1) * TILE), "white")
        draw = ImageDraw.Draw(canvas)
        font = ImageFont.load_default(size=28)
        for n, sticker in enumerate(stickers):
            x, y = (n % COLUMNS) * TILE, (n // COLUMNS) * TILE
            tile = self._first_frame(sticker)
            if tile is not None:
                tile.thumbnail((FRAME, FRAME))
                canvas.paste(tile, (x + (TILE - tile.width) // 2, y + (TILE - tile.height) // 2 + 6), tile)
            else:
                _placeholder(draw, x, y)
            if self._moves(sticker):
                _play_mark(draw, x, y)
            draw.rounded_rectangle((x + 4, y + 4, x + 40, y + 40), radius=8, fill="#1f6feb")
            draw.text((x + 22, y + 22), str(n + 1), fill="white", font=font, anchor="mm")
            draw.rectangle((x, y, x + TILE - 1, y + TILE - 1), outline="#dddddd")
            if highlight == n + 1:
                draw.rectangle((x + 1, y + 1, x + TILE - 2, y + TILE - 2), outline=HIGHLIGHT, width=HIGHLIGHT_WIDTH)
        buffer = io.BytesIO()
        canvas.save(buffer, "PNG", compress_level=1)  # speed over a few kilobytes
        _atomic_write(cached, buffer.getvalue())
        return buffer.getvalue()

    def _moves(self, sticker: StickerView) -> bool:
        """Video and animated stickers get a play mark: WEBM and TGS always, GIF and WEBP when they
        have more than one frame."""
        if sticker.format in MOVING:
            return True
        if sticker.format not in ("gif", "webp"):
            return False
        moves = self._animated.get(sticker.key)
        if moves is None:
            try:
                with Image.open(self._path(sticker)) as image:
                    moves = getattr(image, "n_frames", 1) > 1
            except (OSError, ValueError, Image.DecompressionBombError):
                moves = sticker.format == "gif"
            if len(self._animated) > 4096:
                self._animated.clear()
            self._animated[sticker.key] = moves
        return moves

    def _frame_path(self, sticker: StickerView) -> tuple[Path, Path] | None:
        """The sticker's file and where its first frame is cached: the name changes with the file's
        size and time, so a replaced file is decoded again."""
        try:
            path = self._path(sticker)
            stat = path.stat()
        except (OSError, ValueError):
            return None
        name = f"{sticker.key}|{stat.st_size}|{stat.st_mtime_ns}|{FRAME}"
        digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()
        return path, self.frame_dir / f"{digest}.png"

    def _decode_moving(self, stickers: list[StickerView]) -> None:
        """Decode, in one child process, the first frames of this grid's WEBM and TGS stickers that
        are in neither cache; a file that fails is logged once and drawn as a placeholder."""
        jobs: dict[Path, tuple[StickerView, Job]] = {}
        for sticker in stickers:
            if sticker.format not in MOVING or sticker.key in self._tiles:
                continue
            located = self._frame_path(sticker)
            if located is None:
                continue
            source, out = located
            failed = out.with_suffix(".fail")
            if out.exists() or out in jobs:
                continue
            if failed.exists():
                self._remember(sticker.key, None)
                continue
            jobs[out] = (sticker, Job(source, sticker.format, out, FRAME))
        if not jobs:
            return
        results = self.decoder.decode([job for _, job in jobs.values()])
        for out, (sticker, _) in jobs.items():
            reason = results.get(out, "no answer")
            if reason is None:
                continue
            log.warning("sticker %s (%s): no preview, its first frame cannot be decoded: %s",
                        sticker.key, sticker.format, reason)
            self._remember(sticker.key, None)
            if not reason.startswith(("timed out", "the decoder cannot start")):
                with contextlib.suppress(OSError):  # a bad file stays bad: not decoded again after a restart
                    _atomic_write(out.with_suffix(".fail"), reason.encode())

    def _remember(self, key: str, tile: Image.Image | None) -> None:
        if len(self._tiles) > 4096:
            self._tiles.clear()
        self._tiles[key] = tile

    def _first_frame(self, sticker: StickerView) -> Image.Image | None:
        tile = self._tiles.get(sticker.key)
        if tile is None and sticker.key not in self._tiles:
            try:
                if sticker.format in MOVING:
                    located = self._frame_path(sticker)
                    if located is None:
                        raise FileNotFoundError(sticker.key)
                    source = located[1]  # a PNG the child wrote: small and already scaled
                else:
                    source = self._path(sticker)
                with Image.open(source) as image:
                    image.seek(0)
                    tile = image.convert("RGBA")
                    tile.thumbnail((FRAME, FRAME))
            except (OSError, ValueError, Image.DecompressionBombError):
                tile = None
            self._remember(sticker.key, tile)
        return tile.copy() if tile is not None else None


def _placeholder(draw: ImageDraw.ImageDraw, x: int, y: int) -> None:
    """A tile for a sticker with no picture: a grey play triangle in the middle."""
    cx, cy = x + TILE // 2, y + TILE // 2 + 6
    draw.polygon([(cx - 16, cy - 20), (cx - 16, cy + 20), (cx + 20, cy)], fill=PLACEHOLDER)


def _play_mark(draw: ImageDraw.ImageDraw, x: int, y: int) -> None:
    """A small ▶ in the tile's bottom right corner: this sticker moves."""
    cx, cy = x + TILE - 22, y + TILE - 22
    draw.ellipse((cx - 15, cy - 15, cx + 15, cy + 15), fill=PLAY_BACK)
    draw.polygon([(cx - 5, cy - 8), (cx - 5, cy + 8), (cx + 8, cy)], fill="white")


def _atomic_write(path: Path, data: bytes) -> None:
    """Write through a temporary file of a name unique to this writer, then rename it into place:
    concurrent conversions of one sticker each write their own file, and a reader sees either
    no file or a whole one (the last rename wins; all writers wrote the same bytes)."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
