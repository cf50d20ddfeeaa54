"""Is a sticker file what its name says? Checked by content, never by name: the magic bytes of
the format, then a decode (Pillow for PNG, GIF and WEBP; the EBML header and its "webm" doc type
for WEBM; a gzip stream holding a Lottie JSON object for TGS)."""

from __future__ import annotations

import gzip
import warnings
import zlib
from pathlib import Path

from PIL import Image

MAX_STICKER_BYTES = 64 * 2**20  # Telegram's own limits are far lower (512 KB static, 256 KB video)
MAX_SIDE = 8192  # a sticker is 512 px a side; anything this big is not one (nor a decompression bomb)

_MAGIC = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "gif": (b"GIF87a", b"GIF89a"),
    "webm": (b"\x1a\x45\xdf\xa3",),
    "tgs": (b"\x1f\x8b",),
}


class StickerFileError(ValueError):
    pass


def check_sticker_file(path: Path, fmt: str) -> None:
    """Raise StickerFileError unless `path` holds a readable sticker of format `fmt`."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise StickerFileError("the sticker file is empty")
    if size > MAX_STICKER_BYTES:
        raise StickerFileError(f"the sticker file is over {MAX_STICKER_BYTES // 2**20} MB")
    with path.open("rb") as f:
        head = f.read(64)
    if fmt == "webp":
        if not (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
            raise StickerFileError("not a WEBP file (wrong magic bytes)")
    elif fmt in _MAGIC:
        if not head.startswith(_MAGIC[fmt]):
            raise StickerFileError(f"not a {fmt.upper()} file (wrong magic bytes)")
    else:
        raise StickerFileError(f"unsupported sticker format {fmt!r}")
    if fmt in ("png", "gif", "webp"):
        _decode_image(path, fmt)
    elif fmt == "webm":
        if b"webm" not in head[:64]:
            raise StickerFileError("a Matroska file that is not WEBM")
    elif fmt == "tgs":
        try:
            with gzip.open(path, "rb") as f:
                start = f.read(64).lstrip()
        except (OSError, EOFError, zlib.error) as error:
            raise StickerFileError(f"not a TGS file ({error})") from None
        if not start.startswith(b"{"):
            raise StickerFileError("not a TGS file (no Lottie JSON inside)")


def _decode_image(path: Path, fmt: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if (image.format or "").lower() != fmt:
                    raise StickerFileError(f"not a {fmt.upper()} file (it is {image.format})")
                if max(image.size) > MAX_SIDE:
                    raise StickerFileError(f"{image.size[0]}×{image.size[1]} pixels is not a sticker")
                image.verify()
    except StickerFileError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning,
            EOFError) as error:
        raise StickerFileError(f"the {fmt.upper()} file cannot be decoded ({error})") from None
