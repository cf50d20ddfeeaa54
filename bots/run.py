"""`sticktionary run`: every configured bot in one process, by long polling or by webhook."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from bots.app import SharedState, make_shell
from bots.conversation import Conversation
from bots.game_threads import GameThreads, game_executor
from bots.media import Media
from bots.partner_seat import PartnerSeat
from bots.startup import settled_heap
from bots.webhook import WebhookReceiver
from core import metrics
from core.game import Game
from core.health import Health, HealthListener, database_check, flag_check, redis_check
from storage.db import make_engine
from storage.migrate import upgrade
from storage.settings import Settings

log = logging.getLogger(__name__)


class ConfigurationError(ValueError):
    pass


def check_configuration(settings: Settings) -> None:
    """Refuse to start, with a message that says what to set, rather than fail later."""
    if not settings.telegram.bots:
        raise ConfigurationError(
            'no bots configured: set STICKTIONARY_BOTS, e.g. '
            '[{"token": "123:abc", "framework": "ptb", "languages": ["en"]}] (in the environment or .env)')
    tokens = [b.token.get_secret_value() for b in settings.telegram.bots]
    if any(":" not in t or not t.split(":")[0].isdigit() for t in tokens):
        raise ConfigurationError("a bot token looks wrong: it is <digits>:<secret>, as @BotFather gives it")
    if len(set(tokens)) != len(tokens):
        raise ConfigurationError("the same token is configured twice")
    keys = [b.key for b in settings.telegram.bots]
    if len(set(keys)) != len(keys):
        raise ConfigurationError("two bots have the same name: give each a different \"name\" in STICKTIONARY_BOTS")
    if settings.telegram.webhook_url and not settings.telegram.webhook_secret:
        raise ConfigurationError("STICKTIONARY_WEBHOOK_URL is set but STICKTIONARY_WEBHOOK_SECRET is not: "
                                 "webhooks need a secret token")
    if not settings.storage.sticker_root.exists():
        raise ConfigurationError(f"the sticker folder {settings.storage.sticker_root} does not exist: "
                                 "set STICKTIONARY_STICKER_ROOT or import stickers first")


def moderator_bot_key(settings: Settings) -> str:
    """The one bot, the same in every process, that delivers what is addressed to no player."""
    return settings.telegram.moderator_bot or settings.telegram.bots[0].key


def bots_health(settings: Settings, db, started) -> Health:
    """/healthz, /readyz and /metrics of the bots: ready once the database answers at the newest
    migration, Redis answers (when configured) and `started()` says the bots are up."""
    checks = {"database": database_check(db)}
    closers = []
    if settings.telegram.redis_url:
        checks["redis"], close = redis_check(settings.telegram.redis_url)
        closers.append(close)
    checks["bots"] = flag_check(started, "the bots have not started yet")
    health = Health("bots", checks, extra=metrics.DatabaseState(db, [b.key for b in settings.telegram.bots]).families)
    for close in closers:
        health.on_close(close)
    return health


async def run_bots(settings: Settings, stop: asyncio.Event | None = None, on_ready=None,
                   health: Health | None = None) -> None:
    """Run until `stop` is set (default: SIGINT/SIGTERM). `on_ready(shells)` is called once every
    bot is up (the demo uses it to follow the bots' work). `health` replaces the bots' own
    /healthz, /readyz and /metrics (`sticktionary play` serves them on its page's server)."""
    check_configuration(settings)
    db = make_engine(settings.storage.database_url)
    running = asyncio.Event()
    own_health = health is None
    health = health or bots_health(settings, db, running.is_set)
    listener = HealthListener(health) if own_health and settings.health.health_listen else None
    if listener is not None:  # up before the bots, so that a prober sees "alive, not ready yet"
        try:
            log.info("health and metrics on %s", await listener.start(settings.health.health_listen))
        except OSError as error:
            raise ConfigurationError(f"cannot listen on STICKTIONARY_HEALTH_LISTEN={settings.health.health_listen} "
                                     f"({error.strerror})") from None
    await asyncio.to_thread(upgrade, db)
    game = await asyncio.to_thread(Game.open, db, settings)
    game.follow_search_changes()  # other processes' changes reach this one's search within the poll interval
    conversation = Conversation(game, moderators=set(settings.telegram.moderators))
    media = Media(settings.storage.sticker_root, settings.telegram.media_cache)
    telegram = settings.telegram
    receiver = WebhookReceiver(telegram.webhook_secret.get_secret_value()) if telegram.webhook_url else None
    if receiver is not None and own_health:
        health.add_routes(receiver.app)
    executor = game_executor(settings.telegram.game_threads)
    shared = SharedState(settings.telegram.redis_url) if settings.telegram.redis_url else None
    shells = []
    seat = None
    moderator_bot = moderator_bot_key(settings)
    if moderator_bot not in {config.key for config in settings.telegram.bots}:
        log.warning("the moderator bot %s is not among this process's bots: another process must run it, or "
                    "moderator notices and posts to chats stay queued", moderator_bot)
    try:
        keys = []
        for config in settings.telegram.bots:
            token = config.token.get_secret_value()
            keys.append(config.key)
            shells.append(make_shell(config.framework, token, settings.telegram.telegram_api, game, conversation, media,
                                     bot_key=config.key, languages=tuple(config.languages),
                                     delivers_to_moderators=config.key == moderator_bot, game_executor=executor,
                                     shared=shared))
        # Every bot is set up before any receives: a bot's backlog then cannot hold up another's start.
        for shell in shells:
            await shell.open()
        await asyncio.gather(*(shell.runtime.register_commands() for shell in shells))
        for key, shell, config in zip(keys, shells, settings.telegram.bots, strict=True):
            await shell.start(polling=receiver is None)
            if receiver is not None:
                receiver.add(key, shell)
                await shell.runtime.sender_set_webhook(f"{settings.telegram.webhook_url.rstrip('/')}/telegram/{key}",
                                                       settings.telegram.webhook_secret.get_secret_value())
            log.info("bot %s (%s, %s) is running", key, config.framework, "/".join(config.languages))
        if receiver is not None:
            host, _, port = settings.telegram.webhook_listen.rpartition(":")
            await receiver.start(host or "0.0.0.0", int(port))
        seat = PartnerSeat(game, GameThreads(executor))  # rounds no person has taken get a partner's answer
        seat.start()
        health.start_heartbeat()
        running.set()
        stop = stop or stop_on_signals()
        if on_ready is not None:
            on_ready(shells)
        with settled_heap():
            await stop.wait()
    finally:
        running.clear()  # /readyz: not ready while stopping
        if seat is not None:
            await seat.stop()
        if receiver is not None:
            await receiver.stop()  # no new updates; those in flight are finished by the shells' stop
        if listener is not None:
            await listener.stop()
        if own_health:
            await health.close()
        for shell in shells:
            with contextlib.suppress(Exception):
                await shell.stop()
        if shared is not None:
            await shared.close()
        executor.shutdown(wait=True)
        game.close()
        db.dispose()


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop
