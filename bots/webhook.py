"""One webhook receiver for every bot in the process. Telegram signs each delivery with the
secret token given to setWebhook; a request without the right one is refused."""

from __future__ import annotations

import hmac

from aiohttp import web

from storage.outage import DATABASE, is_database_outage, outage


class WebhookReceiver:
    def __init__(self, secret: str):
        if not secret:
            raise ValueError("a webhook needs a secret token")
        self.secret = secret
        self.shells: dict[str, object] = {}
        self.app = web.Application()
        self.app.router.add_post("/telegram/{bot_key}", self._receive)
        self._runner: web.AppRunner | None = None

    def add(self, bot_key: str, shell) -> None:
        self.shells[bot_key] = shell

    async def _receive(self, request: web.Request) -> web.Response:
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            return web.Response(status=401, text="missing or wrong secret token")
        shell = self.shells.get(request.match_info["bot_key"])
        if shell is None:
            return web.Response(status=404)
        try:
            update = await request.json()
        except ValueError:
            return web.Response(status=400, text="not JSON")
        if not isinstance(update, dict) or "update_id" not in update:
            return web.Response(status=400, text="not an update")
        # Stored before Telegram hears 200: a worker killed after this still has it in the inbox.
        try:
            await shell.feed(update)
        except Exception as error:
            if not is_database_outage(error):
                raise
            # Not stored: Telegram keeps the update and delivers it again later.
            outage(DATABASE).begin(error)
            outage(DATABASE).waiting()
            return web.Response(status=503, text="the database is unreachable; deliver it again later")
        return web.Response(text="ok")

    async def start(self, host: str, port: int) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        # reuse_port: the workers of `sticktionary run --workers N` all listen here; the kernel
        # spreads connections over them.
        site = web.TCPSite(self._runner, host, port, reuse_port=True)
        await site.start()
        port = self._runner.addresses[0][1]  # the port the system chose when asked for 0
        return f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
