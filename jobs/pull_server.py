"""The researchers' pull endpoint: lists the exports and serves their files.

    GET /exports                          {"latest": version, "exports": [{version, created_at, queries}]}
    GET /exports/<version>/manifest.json  (<version> may be "latest")
    GET /exports/<version>/<file>         ETag / If-None-Match, Range / If-Range (aiohttp's FileResponse)

Every request needs `Authorization: Bearer <token>` with one of the configured tokens. Only
complete exports are visible; export folders never change once complete, so a file's ETag stays
valid for as long as its export exists.

Requests come from anywhere: a malformed header or path gets a 400, never a 500. Ranges follow
RFC 9110 where aiohttp does not: an If-Range that does not match the file (by ETag, or by date)
means the whole file (200); a Range header that is not one valid byte range is ignored (200); a
range that cannot be satisfied, ``bytes=-0`` included, is a 416.
"""

from __future__ import annotations

import hmac
import logging
import re
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath

from aiohttp import hdrs, web
from multidict import CIMultiDict

from core import metrics
from core.health import Health, folder_check
from storage.export_files import MANIFEST, latest_export, list_exports, read_manifest

log = logging.getLogger(__name__)

MAX_PATH_CHARS = 1024
HEALTH_PATHS = ("/healthz", "/readyz", "/metrics")
_RANGE = re.compile(r"bytes=([0-9]{0,18})-([0-9]{0,18})", re.ASCII)
# Control characters (NUL above all), backslashes and lone surrogates (undecodable bytes).
_UNSAFE_PATH = re.compile("[\x00-\x1f\x7f\\\\\ud800-\udfff]")


def _bad_request(reason: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f'{{"error": "{reason}"}}', content_type="application/json")


class _ExportFile(web.FileResponse):
    """A FileResponse that sees the request without Range and If-Range when the range must not
    be honoured (aiohttp reads If-Range only as a date, and would honour a range on an ETag that
    does not match)."""

    def __init__(self, path: Path, *, whole: bool, **kwargs):
        super().__init__(path, **kwargs)
        self._whole = whole

    async def prepare(self, request: web.BaseRequest):
        if self._whole:
            headers = CIMultiDict(request.headers)
            headers.popall(hdrs.RANGE, None)
            headers.popall(hdrs.IF_RANGE, None)
            request = request.clone(headers=headers)
        return await super().prepare(request)


def _range_decision(request: web.Request, path: Path) -> tuple[bool, web.HTTPException | None]:
    """(serve the whole file?, or an error to answer with) for the request's Range and If-Range."""
    header = request.headers.get(hdrs.RANGE)
    if header is None:
        return True, None
    stat = path.stat()
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return True, None  # not one byte range we understand: ignored, as RFC 9110 allows
    first, last = match.groups()
    if first and last and int(last) < int(first):
        return True, None  # an invalid range-spec: the header is ignored
    unsatisfiable = (not first and int(last) == 0) or (first and int(first) >= stat.st_size)
    if_range = request.headers.get(hdrs.IF_RANGE)
    if if_range is not None and not _if_range_matches(if_range.strip(), stat):
        return True, None
    if unsatisfiable:
        return False, web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{stat.st_size}"})
    return False, None


def _if_range_matches(value: str, stat) -> bool:
    """If-Range holds an entity tag (strong comparison) or an HTTP date (exact match)."""
    if value.startswith(('"', "W/")):
        return value == f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'  # aiohttp's ETag for the file
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return False
    return moment is not None and int(moment.timestamp()) == int(stat.st_mtime)


def _unauthorized(reason: str) -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(
        text=f'{{"error": "{reason}"}}', content_type="application/json",
        headers={"WWW-Authenticate": f'Bearer realm="sticktionary-exports", error="{reason}"'})


def make_app(export_dir: Path, tokens: list[str]) -> web.Application:
    if not tokens:
        raise ValueError("the pull endpoint needs at least one bearer token")
    root = Path(export_dir)
    secrets = [t.encode() for t in tokens]

    health = Health("pull", {"exports": folder_check(root)}, extra=lambda: metrics.export_families(root))

    @web.middleware
    async def require_token(request: web.Request, handler):
        if request.path in HEALTH_PATHS:  # for the orchestrator and Prometheus: no token, no secret in them
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise _unauthorized("invalid_request")
        try:
            offered = given.strip().encode("utf-8")
        except UnicodeEncodeError:  # raw bytes that are not UTF-8 (aiohttp keeps them as surrogates)
            raise _bad_request("invalid_request") from None
        # Compare against every token, in constant time, so timing does not tell which one nearly matched.
        if not any([hmac.compare_digest(offered, secret) for secret in secrets]):
            log.warning("refused a wrong token from %s", request.remote)
            raise _unauthorized("invalid_token")
        return await handler(request)

    async def index(request: web.Request) -> web.Response:
        exports = []
        for version in list_exports(root):
            manifest = read_manifest(root / version)
            exports.append({"version": version, "created_at": manifest.get("created_at"),
                            "queries": manifest.get("queries"), "manifest": f"/exports/{version}/{MANIFEST}"})
        return web.json_response({"latest": latest_export(root), "exports": exports})

    async def export_file(request: web.Request) -> web.StreamResponse:
        version, wanted = request.match_info["version"], request.match_info["path"]
        if len(version) + len(wanted) > MAX_PATH_CHARS:
            raise _bad_request("path too long")
        if _UNSAFE_PATH.search(version) or _UNSAFE_PATH.search(wanted):
            raise _bad_request("invalid path")
        # "latest" moves; a version's files never change.
        caching = "no-cache" if version == "latest" else "private, max-age=31536000, immutable"
        if version == "latest":
            version = latest_export(root)
            if version is None:
                raise web.HTTPNotFound(text='{"error": "no export yet"}', content_type="application/json")
        if version not in list_exports(root):
            raise web.HTTPNotFound(text='{"error": "no such export"}', content_type="application/json")
        relative = PurePosixPath(wanted)
        if relative.is_absolute() or any(part in ("", ".", "..") for part in relative.parts):
            raise web.HTTPNotFound()
        try:
            folder = (root / version).resolve()
            path = (folder / Path(*relative.parts)).resolve()
            if folder not in path.parents or not path.is_file():
                raise web.HTTPNotFound(text='{"error": "no such file"}', content_type="application/json")
            whole, refusal = _range_decision(request, path)
        except (OSError, ValueError):  # a name the file system will not take
            raise _bad_request("invalid path") from None
        if refusal is not None:
            raise refusal
        return _ExportFile(path, whole=whole, headers={"Cache-Control": caching, "X-Export-Version": version})

    app = web.Application(middlewares=[require_token])
    app.router.add_get("/exports", index)
    app.router.add_get("/exports/{version}/{path:.+}", export_file)
    health.add_routes(app)

    async def beat(_app: web.Application) -> None:
        health.start_heartbeat()

    async def close(_app: web.Application) -> None:
        await health.close()

    app.on_startup.append(beat)
    app.on_cleanup.append(close)
    return app


def serve(export_dir: Path, tokens: list[str], host: str, port: int) -> None:
    log.info("serving exports from %s on %s:%s", export_dir, host, port)
    web.run_app(make_app(export_dir, tokens), host=host, port=port, print=None)
