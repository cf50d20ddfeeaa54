"""First frames of video (WEBM) and animated (TGS) stickers, decoded in a child process.

Sticker files come from third parties: decoding them is hostile input. FFmpeg (through PyAV) and
rlottie are C libraries that a malformed file can make loop, allocate without end or crash, so
they never run inside the bot. `FrameDecoder.decode` starts this file as a child process
(``python -P bots/media_frame.py``), hands it the jobs on its standard input, one JSON line each,
and reads one answer line per job ("ok" or "error <reason>"). The child writes each first frame as
a small RGBA PNG (already scaled to fit a tile) into the frame cache. Bounds:

- before decoding: the file's size (MAX_BYTES per format), then the picture's declared size
  (MAX_SIDE) and, for TGS, the inflated JSON's size (a gzip bomb stops at MAX_LOTTIE_JSON);
- while decoding: at most MAX_PACKETS packets are read to find a frame; the child's address space
  is capped (CHILD_MEMORY) and so are the bytes it may write;
- from outside: the parent gives each job PER_FILE_SECONDS (the first also STARTUP_SECONDS for the
  imports), kills the child when one runs over, counts that file as failed and starts a new child
  for the jobs left. A child that dies (a segfault in a decoder) fails only the file it was on.

The child imports only the standard library, Pillow, PyAV and rlottie-python, never the project.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

MAX_BYTES = {"webm": 8 * 2**20, "tgs": 2**20}  # Telegram's own limits: 256 KB video, 64 KB animated
MAX_LOTTIE_JSON = 16 * 2**20
MAX_SIDE = 4096  # a sticker is 512 px a side
MAX_PACKETS = 120  # packets read while looking for a first frame that shows something
PER_FILE_SECONDS = 5.0
STARTUP_SECONDS = 15.0  # importing PyAV and rlottie, on a busy machine
CHILD_MEMORY = 2**30
CHILD_OUTPUT = 16 * 2**20
CONCURRENT_CHILDREN = 2
BATCH = 32  # jobs handed to one child: their JSON lines fit in a pipe's buffer


@dataclass(frozen=True)
class Job:
    source: Path
    format: str  # "webm" or "tgs"
    out: Path  # where the first frame goes, as a PNG
    box: int  # the frame is scaled to fit a box×box square


class FrameDecoder:
    """Runs the child process; `command` is what starts it (tests swap it for a child that hangs or dies)."""

    def __init__(self, *, per_file: float = PER_FILE_SECONDS, startup: float = STARTUP_SECONDS,
                 command: list[str] | None = None):
        self.per_file = per_file
        self.startup = startup
        self.command = command or [sys.executable, "-P", str(Path(__file__).resolve())]
        self._children = threading.BoundedSemaphore(CONCURRENT_CHILDREN)

    def decode(self, jobs: list[Job]) -> dict[Path, str | None]:
        """Decode every job: for each job's `out`, None when the PNG is written, else why not."""
        results: dict[Path, str | None] = {}
        pending = list(jobs)
        with self._children:
            while pending:  # each pass settles at least one job, so this ends
                done = self._run_child(pending[:BATCH])
                results.update(done)
                pending = [job for job in pending if job.out not in results]
        return results

    def _run_child(self, jobs: list[Job]) -> dict[Path, str | None]:
        results: dict[Path, str | None] = {}
        try:
            child = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as error:
            return {job.out: f"the decoder cannot start ({error})" for job in jobs}
        waiting = selectors.DefaultSelector()  # epoll: a bot with over 1024 sockets open is fine too
        try:
            lines = "".join(json.dumps({"source": str(job.source), "format": job.format, "out": str(job.out),
                                        "box": job.box}) + "\n" for job in jobs)
            try:
                child.stdin.write(lines.encode())
                child.stdin.close()
            except OSError:
                pass  # a child that died at once: its missing answers say so below
            buffer = b""
            deadline = time.monotonic() + self.startup + self.per_file
            waiting.register(child.stdout, selectors.EVENT_READ)
            for job in jobs:
                while b"\n" not in buffer:
                    left = deadline - time.monotonic()
                    if left <= 0 or not waiting.select(left):
                        results[job.out] = f"timed out after {self.per_file:g} s"
                        return results
                    chunk = os.read(child.stdout.fileno(), 65536)
                    if not chunk:
                        code = child.wait()
                        reason = f"signal {-code}" if code < 0 else f"exit code {code}"
                        results[job.out] = f"the decoder died ({reason})"
                        return results
                    buffer += chunk
                line, buffer = buffer.split(b"\n", 1)
                answer = line.decode(errors="replace").strip()
                results[job.out] = None if answer == "ok" else (answer.removeprefix("error ") or "no answer")
                deadline = time.monotonic() + self.per_file
            return results
        finally:
            waiting.close()
            _end(child)


def _end(child: subprocess.Popen) -> None:
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)  # its own session: FFmpeg's threads go with it
        with contextlib.suppress(ProcessLookupError):
            child.kill()
    child.wait()
    for stream in (child.stdin, child.stdout):
        with contextlib.suppress(OSError):
            if stream is not None:
                stream.close()


# ---------------------------------------------------------------------------------------------- the child
class Undecodable(Exception):
    pass


def _limit_child() -> None:
    import resource

    for limit, value in ((resource.RLIMIT_AS, CHILD_MEMORY), (resource.RLIMIT_FSIZE, CHILD_OUTPUT),
                         (resource.RLIMIT_CORE, 0)):
        with contextlib.suppress(ValueError, OSError):
            soft, hard = resource.getrlimit(limit)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(limit, (value, hard))


def _check_size(source: Path, fmt: str) -> None:
    size = source.stat().st_size
    if size == 0:
        raise Undecodable("the file is empty")
    if size > MAX_BYTES[fmt]:
        raise Undecodable(f"{size} bytes is over the {MAX_BYTES[fmt]} bytes a {fmt.upper()} preview reads")


def _visible(image) -> bool:
    alpha = image.getchannel("A")
    return alpha.getbbox() is not None


def first_frame_webm(source: Path, box: int):
    """The first frame that shows something (VP8/VP9 with their alpha channel, through libvpx)."""
    import av

    _check_size(source, "webm")
    fallback = None
    with av.open(str(source), "r", options={"probesize": "1000000", "analyzeduration": "1000000"}) as container:
        if not container.streams.video:
            raise Undecodable("no video stream")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
            raise Undecodable(f"{width}×{height} pixels is not a sticker")
        decoder = stream.codec_context
        # FFmpeg's own VP8/VP9 decoders drop the alpha channel that Telegram's video stickers carry.
        wanted = {"vp9": "libvpx-vp9", "vp8": "libvpx"}.get(decoder.name)
        if wanted:
            with contextlib.suppress(Exception):
                decoder = av.CodecContext.create(wanted, "r")
        decoder.thread_count = 1
        packets = 0
        for packet in container.demux(stream):
            packets += 1
            if packets > MAX_PACKETS:
                break
            for frame in decoder.decode(packet) if packet.size else ():
                if not (0 < frame.width <= MAX_SIDE and 0 < frame.height <= MAX_SIDE):
                    raise Undecodable(f"a {frame.width}×{frame.height} frame")
                image = _rgba(frame)
                if _visible(image):
                    return _fit(image, box)
                fallback = fallback or image
        if fallback is None:
            with contextlib.suppress(Exception):
                for frame in decoder.decode(None):  # a decoder that holds frames back gives them up now
                    fallback = _fit(_rgba(frame), box)
                    break
    if fallback is None:
        raise Undecodable("no frame could be decoded")
    if not _visible(fallback):
        raise Undecodable("its first frames are empty")
    return _fit(fallback, box)


def _rgba(frame):
    from PIL import Image

    array = frame.to_ndarray(format="rgba")
    return Image.fromarray(array, "RGBA")


def first_frame_tgs(source: Path, box: int):
    """The first frame of a Lottie animation (gzip'ed JSON), or its middle one when the first is empty."""
    import gzip
    import zlib

    from rlottie_python import LottieAnimation

    _check_size(source, "tgs")
    try:
        with gzip.open(source, "rb") as f:
            data = f.read(MAX_LOTTIE_JSON + 1)
    except (OSError, EOFError, zlib.error) as error:
        raise Undecodable(f"not gzip ({error})") from None
    if len(data) > MAX_LOTTIE_JSON:
        raise Undecodable(f"the Lottie JSON is over {MAX_LOTTIE_JSON} bytes")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise Undecodable(f"not JSON ({type(error).__name__})") from None
    if not isinstance(document, dict) or not isinstance(document.get("layers"), list):
        raise Undecodable("not a Lottie animation")
    width, height = document.get("w"), document.get("h")
    if not all(isinstance(v, int | float) and 0 < v <= MAX_SIDE for v in (width, height)):
        raise Undecodable("the animation has no sensible size")
    animation = LottieAnimation.from_data(data=data.decode("utf-8", errors="replace"))
    if not animation.animation_p:
        raise Undecodable("rlottie cannot read it")
    scale = box / max(width, height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    image = animation.render_pillow_frame(frame_num=0, width=w, height=h)
    if not _visible(image):
        frames = animation.lottie_animation_get_totalframe()
        if isinstance(frames, int) and frames > 2:
            image = animation.render_pillow_frame(frame_num=frames // 2, width=w, height=h)
    if not _visible(image):
        raise Undecodable("its first and middle frames are empty")
    return image.copy()


def _fit(image, box: int):
    """Scaled, up or down, to fit a box×box square (a video sticker may be smaller than 512 px)."""
    from PIL import ImageOps

    return ImageOps.contain(image, (box, box))


def _write_png(image, out: Path) -> None:
    import tempfile

    descriptor, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as f:
            image.save(f, "PNG")
        os.replace(temporary, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _child() -> None:
    _limit_child()
    decoders = {"webm": first_frame_webm, "tgs": first_frame_tgs}
    for line in sys.stdin.readlines():  # all of them first: the parent's write never waits on a decode
        try:
            job = json.loads(line)
            decode = decoders[job["format"]]
            image = decode(Path(job["source"]), int(job["box"]))
            _write_png(image, Path(job["out"]))
            answer = "ok"
        except Undecodable as error:
            answer = f"error {error}"
        except MemoryError:
            answer = "error out of memory"
        except Exception as error:  # anything a decoder raises on a bad file
            answer = f"error {type(error).__name__}: {error}"
        sys.stdout.write(answer.replace("\n", " ")[:300] + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _child()
