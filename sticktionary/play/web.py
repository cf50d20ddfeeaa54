"""The pages of `sticktionary play`: the chat (static HTML, CSS and JavaScript, which talk to the
sandbox's /sim API) and the live dashboard (its data as JSON, its charts as PNG)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from sqlalchemy import Engine

from sticktionary.play import charts
from storage.settings import Settings

STATIC = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True)
class Identity:
    """A person the page can be. A Telegram user plays in one language at a time, so each
    identity is a different user in each bot's chat (its id there: `user_ids[language]`)."""

    name: str
    user_ids: dict[str, int]
    moderator: bool = False


@dataclass(frozen=True)
class BotEntry:
    language: str
    token: str
    username: str
    title: str
    framework: str


@dataclass
class Dashboard:
    """The dashboard's data, computed off the event loop and reused for `fresh` seconds (the page
    and its charts ask together)."""

    db: Engine
    settings: Settings
    fresh: float = 2.0
    _data: dict | None = None
    _at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def data(self) -> dict:
        async with self._lock:
            if self._data is None or time.monotonic() - self._at > self.fresh:
                self._data = await asyncio.to_thread(_dashboard, self.db, self.settings)
                self._at = time.monotonic()
            return self._data


def _dashboard(db: Engine, settings: Settings) -> dict:
    from core.dashboard import dashboard  # brings in pyarrow: kept off the start-up path

    return dashboard(db, settings)


def _time_label(iso: str, unit: str) -> str:
    return iso[5:10] if unit == "day" else iso[11:16]


def chart(name: str, data: dict) -> bytes:
    if name == "timeline":
        timeline = data["timeline"]
        labels = [_time_label(b, timeline["unit"]) for b in timeline["buckets"]]
        series = {language: (charts.COLOURS[language], values["total"])
                  for language, values in timeline["languages"].items()}
        return charts.line_chart(f"Queries collected (total, per {timeline['unit']}, UTC)", labels, series,
                                 empty="no queries written yet")
    if name == "review":
        counts = data["review"]["queries"]
        return charts.bar_chart("Queries by status", [(status, n) for status, n in counts.items()],
                                highlight="needs_review")
    if name == "recall":
        metrics = data["metrics"]
        if metrics is None:
            return charts.grouped_bars("BM25 Recall@k, latest export", [], {})
        languages = metrics["languages"]
        keys = [k for k in next(iter(languages.values()), {}).get("bm25_retrieval", {}) if k.startswith("recall@")]
        series = {language: (charts.COLOURS.get(language, charts.PALETTE[0]),
                             [values["bm25_retrieval"].get(k) for k in keys]) for language, values in languages.items()}
        return charts.grouped_bars(f"BM25 Recall@k, export {metrics['version']}", keys, series)
    raise KeyError(name)


@dataclass(frozen=True)
class GroupEntry:
    """A group chat the page shows, with the bot and the identities in it (a race seen from each side)."""

    chat_id: int
    title: str
    token: str
    members: list[str]
    commands: list[tuple[str, str]]


def add_routes(app: web.Application, *, bots: list[BotEntry], identities: list[Identity], board: Dashboard,
               moderator_commands: list[tuple[str, str]], groups: list[GroupEntry] = ()) -> None:
    """The pages, on the sandbox's own server: the page then reaches /sim on the same origin."""

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / ("dashboard.html" if request.path == "/dashboard" else "index.html"),
                                headers={"Cache-Control": "no-cache"})

    async def config(request: web.Request) -> web.Response:
        return web.json_response({
            "bots": [{"language": b.language, "token": b.token, "username": b.username, "title": b.title,
                      "framework": b.framework} for b in bots],
            "identities": [{"name": i.name, "user_ids": i.user_ids, "moderator": i.moderator} for i in identities],
            "moderator_commands": [{"command": c, "description": d} for c, d in moderator_commands],
            "groups": [{"chat_id": g.chat_id, "title": g.title, "token": g.token, "members": g.members,
                        "commands": [{"command": c, "description": d} for c, d in g.commands]} for g in groups],
        })

    async def data(request: web.Request) -> web.Response:
        return web.json_response(await board.data(), headers={"Cache-Control": "no-cache"})

    async def chart_png(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ("timeline", "review", "recall"):
            raise web.HTTPNotFound()
        body = await asyncio.to_thread(chart, name, await board.data())
        return web.Response(body=body, content_type="image/png", headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", page)
    app.router.add_get("/dashboard", page)
    app.router.add_get("/play/config", config)
    app.router.add_get("/play/dashboard", data)
    app.router.add_get("/play/chart/{name}.png", chart_png)
    app.router.add_static("/static/", STATIC, append_version=False)
