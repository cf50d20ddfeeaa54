"""`sticktionary run`: every configured bot in one process, by long polling or by webhook."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from bots.app import game_executor, make_shell, settled_heap
from bots.conversation import Conversation
from bots.media import Media
from bots.webhook import WebhookReceiver
from core.engine import Game
from storage.db import make_engine
from storage.migrate import upgrade
from storage.settings import Settings

log = logging.getLogger(__name__)


class ConfigurationError(ValueError):
    pass


def check_configuration(settings: Settings) -> None:
    """Refuse to start, with a message that says what to set, rather than fail later."""
    if not settings.bots:
        raise ConfigurationError(
            'no bots configured: set STICKTIONARY_BOTS, e.g. '
            '[{"token": "123:abc", "framework": "ptb", "languages": ["en"]}] (in the environment or .env)')
    tokens = [b.token.get_secret_value() for b in settings.bots]
    if any(":" not in t or not t.split(":")[0].isdigit() for t in tokens):
        raise ConfigurationError("a bot token looks wrong: it is <digits>:<secret>, as @BotFather gives it")
    if len(set(tokens)) != len(tokens):
        raise ConfigurationError("the same token is configured twice")
    if settings.webhook_url and not settings.webhook_secret:
        raise ConfigurationError("STICKTIONARY_WEBHOOK_URL is set but STICKTIONARY_WEBHOOK_SECRET is not: "
                                 "webhooks need a secret token")
    if not settings.sticker_root.exists():
        raise ConfigurationError(f"the sticker folder {settings.sticker_root} does not exist: "
                                 "set STICKTIONARY_STICKER_ROOT or import stickers first")


async def run_bots(settings: Settings, stop: asyncio.Event | None = None, on_ready=None) -> None:
    """Run until `stop` is set (default: SIGINT/SIGTERM). `on_ready(shells)` is called once every
    bot is up (the demo uses it to follow the bots' work)."""
    check_configuration(settings)
    db = make_engine(settings.database_url)
    await asyncio.to_thread(upgrade, db)
    game = await asyncio.to_thread(Game, db, settings)
    game.follow_search_changes()  # other processes' changes reach this one's search within the poll interval
    conversation = Conversation(game, moderators=set(settings.moderators))
    media = Media(settings.sticker_root, settings.media_cache)
    receiver = WebhookReceiver(settings.webhook_secret.get_secret_value()) if settings.webhook_url else None
    executor = game_executor(settings.game_threads)
    shells, tasks = [], []
    try:
        for position, config in enumerate(settings.bots):
            token = config.token.get_secret_value()
            key = config.name or token.split(":")[0]
            shell = make_shell(config.framework, token, settings.telegram_api, game, conversation, media,
                               bot_key=key, languages=tuple(config.languages),
                               delivers_to_moderators=position == 0, game_executor=executor)
            await shell.start(polling=receiver is None)
            shells.append(shell)
            await shell.runtime.register_commands()
            tasks.append(asyncio.create_task(shell.runtime.run_outbox()))
            if receiver is not None:
                receiver.add(key, shell)
                await shell.runtime.sender_set_webhook(f"{settings.webhook_url.rstrip('/')}/telegram/{key}",
                                                       settings.webhook_secret.get_secret_value())
            log.info("bot %s (%s, %s) is running", key, config.framework, "/".join(config.languages))
        if receiver is not None:
            host, _, port = settings.webhook_listen.rpartition(":")
            await receiver.start(host or "0.0.0.0", int(port))
        stop = stop or _stop_on_signals()
        if on_ready is not None:
            on_ready(shells)
        with settled_heap():
            await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        for shell in shells:
            with contextlib.suppress(Exception):
                await shell.stop()
        if receiver is not None:
            await receiver.stop()
        executor.shutdown(wait=True)
        game.close()
        db.dispose()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop
