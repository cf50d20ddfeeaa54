"""A running bot on the sandbox: demo-pack data, a game, a shell of either framework."""

from __future__ import annotations

import random
import shutil
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from bots.app import make_shell
from bots.conversation import Conversation
from bots.media import Media
from bots.webhook import WebhookReceiver
from core.game import Game
from offline.demo_pack import PACK_DIR, load_demo_pack
from offline.sandbox import Sandbox
from offline.sandbox.players import SandboxPlayer
from storage.db import make_engine
from storage.settings import Settings

TOKEN = "123456:TEST-token"
MODERATOR = 900


def prepare_database(tmp_path: Path, template: Path):
    database = tmp_path / "bots.sqlite3"
    shutil.copy(template, database)
    db = make_engine(f"sqlite:///{database}")
    load_demo_pack(db)
    return db


@asynccontextmanager
async def running_bot(db, tmp_path: Path, framework: str, *, rate_limits: bool = False, gold_rate: float = 0.0,
                      seed: int = 1, webhook_secret: str | None = None, **rules):
    """`rules`: game rules other than the defaults (settings.rules), e.g. partner_after=1."""
    settings = Settings(storage={"database_url": str(db.url), "sticker_root": PACK_DIR},
                        rules={"gold_rate": gold_rate, **rules}, _env_file=None)
    game = Game.open(db, settings, rng=random.Random(seed))
    conversation = Conversation(game, moderators={MODERATOR})
    media = Media(PACK_DIR, tmp_path / "media-cache")
    sandbox = Sandbox(rate_limits=rate_limits)
    sandbox.add_bot(TOKEN, "sticktionary_test_bot")
    base = await sandbox.start()
    shell = make_shell(framework, TOKEN, base, game, conversation, media, pacing=rate_limits)
    receiver = None
    if webhook_secret:
        receiver = WebhookReceiver(webhook_secret)
        receiver.add("main", shell)
        hook_base = await receiver.start("127.0.0.1", 0)
        await shell.start(polling=False, outbox=False)
        await shell.runtime.sender_set_webhook(f"{hook_base}/telegram/main", webhook_secret)
    else:
        await shell.start(poll_timeout=1, outbox=False)  # the tests deliver the outbox themselves
    client = httpx.AsyncClient(base_url=base, timeout=30)
    world = BotWorld(sandbox, shell, game, client)
    world.webhook_url = f"{hook_base}/telegram/main" if receiver else None
    try:
        yield world
    finally:
        await client.aclose()
        await shell.stop()
        if receiver:
            await receiver.stop()
        await sandbox.stop()


class BotWorld:
    def __init__(self, sandbox, shell, game, client):
        self.sandbox, self.shell, self.game, self.client = sandbox, shell, game, client

    def player(self, user_id: int, language_code: str = "en", name: str | None = None) -> SandboxPlayer:
        return SandboxPlayer(self.client, TOKEN, user_id, name or f"P{user_id}", language_code,
                             wait_finished=self.shell.runtime.wait_finished)


def texts(entries):
    """What the player reads in each message: its text or its caption."""
    return [e.get("text") or e.get("caption") or "" for e in entries]
