"""Sticker files as Telegram wants them, and numbered candidate grids composed with Pillow.

sendSticker takes WEBP, TGS or WEBM: PNG is converted to WEBP; GIF goes out as an animation.
Grids show the first frame of animated stickers; a sticker Pillow cannot read (WEBM) gets a tile
with its number and a play mark. Converted files and grids are cached on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from core.views import StickerView

TILE = 160
COLUMNS = 3


@dataclass(frozen=True)
class StickerFile:
    filename: str
    data: bytes


class Media:
    def __init__(self, sticker_root: Path, cache_dir: Path):
        self.sticker_root = Path(sticker_root)
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._tiles: dict[str, Image.Image | None] = {}  # first frames, already scaled to a tile

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

    def grid(self, stickers: list[StickerView]) -> bytes:
        key = hashlib.sha1("|".join(s.key for s in stickers).encode(), usedforsecurity=False).hexdigest()
        cached = self.cache_dir / f"grid-{key}.png"
        try:
            return cached.read_bytes()
        except FileNotFoundError:
            pass
        rows = (len(stickers) + COLUMNS - 1) // COLUMNS
        canvas = Image.new("RGB", (COLUMNS * TILE, max(rows, 1) * TILE), "white")
        draw = ImageDraw.Draw(canvas)
        font = ImageFont.load_default(size=28)
        for n, sticker in enumerate(stickers):
            x, y = (n % COLUMNS) * TILE, (n // COLUMNS) * TILE
            tile = self._first_frame(sticker)
            if tile is not None:
                tile.thumbnail((TILE - 24, TILE - 24))
                canvas.paste(tile, (x + (TILE - tile.width) // 2, y + (TILE - tile.height) // 2 + 6), tile)
            else:
                draw.text((x + TILE // 2, y + TILE // 2), "▶", fill="grey", font=font, anchor="mm")
            draw.rounded_rectangle((x + 4, y + 4, x + 40, y + 40), radius=8, fill="#1f6feb")
            draw.text((x + 22, y + 22), str(n + 1), fill="white", font=font, anchor="mm")
            draw.rectangle((x, y, x + TILE - 1, y + TILE - 1), outline="#dddddd")
        buffer = io.BytesIO()
        canvas.save(buffer, "PNG", compress_level=1)  # speed over a few kilobytes
        _atomic_write(cached, buffer.getvalue())
        return buffer.getvalue()

    def _first_frame(self, sticker: StickerView) -> Image.Image | None:
        tile = self._tiles.get(sticker.key)
        if tile is None and sticker.key not in self._tiles:
            try:
                with Image.open(self._path(sticker)) as image:
                    image.seek(0)
                    tile = image.convert("RGBA")
                    tile.thumbnail((TILE - 24, TILE - 24))
            except (OSError, ValueError):
                tile = None
            if len(self._tiles) > 4096:
                self._tiles.clear()
            self._tiles[sticker.key] = tile
        return tile.copy() if tile is not None else None


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
