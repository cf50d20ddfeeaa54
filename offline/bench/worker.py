"""One bot process of `sticktionary bench bots`: `python -m offline.bench.worker SPEC`.

role "game": the game shell in webhook mode on its own port (the sandbox spreads deliveries over
the workers), with GET /finished?update_id=N on the same port: ok once THIS process has delivered
its last reply to update N (504 past `timeout`; a worker that did not handle N never answers ok).
role "echo": the bare echo bot, polling. Prints "ready URL" and serves until stdin closes."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path

from aiohttp import web


async def _stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def serve_echo(spec: dict) -> None:
    from offline.bench.bots import _echo_shell

    echo = _echo_shell(spec["framework"], spec["sandbox"])
    await echo.start()
    print("ready echo", flush=True)
    try:
        await _stdin_closed()
    finally:
        await echo.stop()


async def serve_game(spec: dict) -> None:
    from bots.app import SharedState, make_shell
    from bots.conversation import Conversation
    from bots.game_threads import game_executor
    from bots.media import Media
    from bots.startup import settled_heap
    from bots.webhook import WebhookReceiver
    from core.game import Game
    from offline.demo_pack import PACK_DIR
    from storage.db import make_engine
    from storage.settings import Settings

    db = make_engine(spec["database_url"])
    settings = Settings(storage={"database_url": spec["database_url"]}, rules={"gold_rate": 0.15}, _env_file=None)
    game = Game.open(db, settings, rng=random.Random(spec["index"]))
    executor = game_executor(settings.telegram.game_threads)
    shared = SharedState(spec["redis_url"]) if spec.get("redis_url") else None
    shell = make_shell(spec["framework"], spec["game_token"], spec["sandbox"], game, Conversation(game),
                       Media(PACK_DIR, Path(spec["workdir"]) / f"media{spec['index']}"), bot_key="game",
                       pacing=False, game_executor=executor, shared=shared)
    receiver = WebhookReceiver(spec["secret"])
    receiver.add("game", shell)

    async def finished(request: web.Request) -> web.Response:
        try:
            await shell.runtime.wait_finished(int(request.query["update_id"]),
                                              float(request.query.get("timeout", 30)))
        except TimeoutError:
            return web.Response(status=504)
        return web.Response(text="ok")

    receiver.app.router.add_get("/finished", finished)
    await shell.start(polling=False)
    base = await receiver.start("127.0.0.1", spec["port"])
    print(f"ready {base}", flush=True)
    try:
        with settled_heap():
            await _stdin_closed()
    finally:
        await receiver.stop()
        await shell.stop()
        if shared:
            await shared.close()
        executor.shutdown(wait=True)
        db.dispose()


def main() -> None:
    spec = json.loads(sys.argv[1])
    asyncio.run(serve_game(spec) if spec["role"] == "game" else serve_echo(spec))


if __name__ == "__main__":
    main()
