"""The researchers' pull endpoint: lists the exports and serves their files.

    GET /exports                          {"latest": version, "exports": [{version, created_at, queries}]}
    GET /exports/<version>/manifest.json  (<version> may be "latest")
    GET /exports/<version>/<file>         ETag / If-None-Match, Range / If-Range (aiohttp's FileResponse)

Every request needs `Authorization: Bearer <token>` with one of the configured tokens. Only
complete exports are visible; export folders never change once complete, so a file's ETag stays
valid for as long as its export exists.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path, PurePosixPath

from aiohttp import web

from storage.export_files import MANIFEST, latest_export, list_exports, read_manifest

log = logging.getLogger(__name__)


def _unauthorized(reason: str) -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(
        text=f'{{"error": "{reason}"}}', content_type="application/json",
        headers={"WWW-Authenticate": f'Bearer realm="sticktionary-exports", error="{reason}"'})


def make_app(export_dir: Path, tokens: list[str]) -> web.Application:
    if not tokens:
        raise ValueError("the pull endpoint needs at least one bearer token")
    root = Path(export_dir)
    secrets = [t.encode() for t in tokens]

    @web.middleware
    async def require_token(request: web.Request, handler):
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise _unauthorized("invalid_request")
        # Compare against every token, in constant time, so timing does not tell which one nearly matched.
        if not any([hmac.compare_digest(given.strip().encode(), secret) for secret in secrets]):
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
        version = request.match_info["version"]
        # "latest" moves; a version's files never change.
        caching = "no-cache" if version == "latest" else "private, max-age=31536000, immutable"
        if version == "latest":
            version = latest_export(root)
            if version is None:
                raise web.HTTPNotFound(text='{"error": "no export yet"}', content_type="application/json")
        if version not in list_exports(root):
            raise web.HTTPNotFound(text='{"error": "no such export"}', content_type="application/json")
        relative = PurePosixPath(request.match_info["path"])
        if relative.is_absolute() or any(part in ("", ".", "..") for part in relative.parts):
            raise web.HTTPNotFound()
        folder = (root / version).resolve()
        path = (folder / Path(*relative.parts)).resolve()
        if folder not in path.parents or not path.is_file():
            raise web.HTTPNotFound(text='{"error": "no such file"}', content_type="application/json")
        return web.FileResponse(path, headers={"Cache-Control": caching, "X-Export-Version": version})

    app = web.Application(middlewares=[require_token])
    app.router.add_get("/exports", index)
    app.router.add_get("/exports/{version}/{path:.+}", export_file)
    return app


def serve(export_dir: Path, tokens: list[str], host: str, port: int) -> None:
    log.info("serving exports from %s on %s:%s", export_dir, host, port)
    web.run_app(make_app(export_dir, tokens), host=host, port=port, print=None)
