"""`sticktionary bench ux`: how many messages the game costs a player, counted from the sandbox's
transcript. A fixed script, played over real HTTP through the local Bot API sandbox by simulated
players: each joins, plays `labels` labeler rounds (2-3 queries, a removal every other round) and
`retrievals` retrievals; then a moderator reviews every miss. The outbox is delivered after every
action, as the running bot does, so outcome notices count where they land.

`bot_messages` counts new messages the bot sent (sendMessage, sendPhoto, sendSticker, …) to every
chat, players and moderator; `edits` the edit calls; `tasks` the tasks the players completed
(submitted or skipped rounds and rankings); `messages_per_task` = bot messages sent to players / tasks.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import func
from sqlmodel import Session, select

from offline.sandbox.players import SandboxPlayer
from offline.simulation import demo_vocabulary

TOKEN = "123456:UX-bench"
MODERATOR = 900
FILLERS = {"en": ["so tired", "what a day", "no way", "good vibes", "oh well", "that face"],
           "zh": ["好累啊", "太难了", "无语", "开心", "算了吧", "这表情"]}


def current_messages(transcript: list[dict]) -> dict[int, dict]:
    """Each bot message as it stands now (its latest edit), by message id."""
    state: dict[int, dict] = {}
    for entry in transcript:
        if entry.get("by") == "bot" and "message_id" in entry:
            state[entry["message_id"]] = entry
    return state


def live_buttons(transcript: list[dict], prefix: str) -> list[tuple[int, str]]:
    """(message id, button) offered now by the bot's messages, newest message first."""
    found = []
    for message_id, entry in sorted(current_messages(transcript).items(), reverse=True):
        found += [(message_id, b) for b in SandboxPlayer.buttons(entry) if b.startswith(prefix)]
    return found


@dataclass
class ScriptPlayer:
    player: SandboxPlayer
    language: str
    rng: random.Random
    vocabulary: dict
    oracle: object
    labels: int = 0
    retrievals: int = 0
    removals: int = 0
    log: list[str] = field(default_factory=list)

    async def join(self) -> None:
        await self.player.send("/start")
        await self.player.press(f"lang:{self.language}")
        await self.player.press("consent")

    async def play_one(self, want_labels: int, want_retrievals: int) -> str:
        """Play the task on screen; returns its kind ("label", "retrieval") or "idle"."""
        transcript = await self.player.transcript()
        done = live_buttons(transcript, "pd:")
        skip = live_buttons(transcript, "lx:")
        if done and (not skip or done[0][0] > skip[0][0]):
            message_id, button = done[0]
            task_id = int(button.split(":")[1])
            candidates, target = self.oracle("retrieval", task_id)
            order = list(range(1, len(candidates) + 1))
            self.rng.shuffle(order)
            if self.retrievals == 1 and target in candidates:
                order.remove(candidates.index(target) + 1)
            # Right most of the time, never on a player's second retrieval: every script has misses to review.
            if target in candidates and self.rng.random() < 0.6 and self.retrievals != 1:
                order.remove(candidates.index(target) + 1)
                order.insert(0, candidates.index(target) + 1)
            for position in order[:self.rng.randint(1, 2)]:
                await self.player.press(f"pk:{task_id}:{position}", message_id=message_id)
            await self.player.press(button, message_id=message_id)
            self.retrievals += 1
            return "retrieval"
        if skip:
            message_id, button = skip[0]
            round_id = int(button.split(":")[1])
            key = self.oracle("label", round_id)
            ideas = list(self.vocabulary.get((key, self.language), []))
            self.rng.shuffle(ideas)
            if ideas:  # a taken word with a twist of their own (the screen lists what is taken), then guesses
                twist = "" if self.language == "zh" else " "
                ideas.insert(0, f"{ideas[0]}{twist}{self.rng.choice(FILLERS[self.language])}")
            ideas += [f for f in FILLERS[self.language] if f not in ideas]
            for idea in ideas[:self.rng.choice((2, 3))]:
                await self.player.send(idea)
            if self.labels % 2 == 1:
                removable = [b for _, b in live_buttons(await self.player.transcript(), f"lr:{round_id}:")]
                if removable:
                    await self.player.press(removable[-1])
                    self.removals += 1
            submit = [(m, b) for m, b in live_buttons(await self.player.transcript(), f"ls:{round_id}")]
            if submit:
                await self.player.press(submit[0][1], message_id=submit[0][0])
            else:
                await self.player.press(button, message_id=message_id)
            self.labels += 1
            return "label"
        await self.player.send("/play")
        return "idle"


async def play_script(client: httpx.AsyncClient, token: str, oracle, deliver_outbox, wait_finished,
                      languages: list[str], labels: int = 6, retrievals: int = 6, moderator: int = MODERATOR,
                      seed: int = 7, to_review=lambda: 0) -> dict:
    """The script itself, against a bot already running on the sandbox at `client`'s base."""
    vocabulary = demo_vocabulary()
    players = [ScriptPlayer(SandboxPlayer(client, token, 1000 + i, f"Player{i}", language,
                                          wait_finished=wait_finished), language, random.Random(seed + i),
                            vocabulary, oracle)
               for i, language in enumerate(languages)]
    # The moderator starts first, so that notices for moderators have a chat to go to.
    mod = SandboxPlayer(client, token, moderator, "Moderator", languages[0], wait_finished=wait_finished)
    await mod.send("/start")
    await mod.press(f"lang:{languages[0]}")
    await mod.press("consent")
    for p in players:
        await p.join()
        await deliver_outbox()
    idle = 0
    for _ in range((labels + retrievals) * 3):
        busy = [p for p in players if p.labels + p.retrievals < labels + retrievals]
        if not busy:
            break
        for p in busy:
            kind = await p.play_one(labels, retrievals)
            idle = idle + 1 if kind == "idle" else 0
            await deliver_outbox()
        if idle > 3 * len(players):
            break
    waiting = to_review()  # the queries of missed rounds, waiting for the moderator
    reviewed = 0
    await mod.send("/review")
    pressed: set[str] = set()
    for _ in range(200):
        # Every item once (a screen that is not edited after the decision keeps its buttons).
        accept = [(m, b) for m, b in live_buttons(await mod.transcript(), "ra:") if b not in pressed]
        if not accept:
            break
        pressed.add(accept[0][1])
        await mod.press(accept[0][1], message_id=accept[0][0])
        reviewed += 1
        await deliver_outbox()
    await deliver_outbox()
    for p in players:
        await p.player.transcript()
    await mod.transcript()
    return {"players": players, "moderator": mod, "reviewed": reviewed, "to_review": waiting}


def count(players: list[ScriptPlayer], moderator: SandboxPlayer) -> dict:
    def tally(entries):
        sent = sum(1 for e in entries if e.get("by") == "bot" and not e.get("edit"))
        edits = sum(1 for e in entries if e.get("by") == "bot" and e.get("edit"))
        return sent, edits

    player_sent = player_edits = 0
    for p in players:
        sent, edits = tally(p.player.entries)
        player_sent += sent
        player_edits += edits
    mod_sent, mod_edits = tally(moderator.entries)
    tasks = sum(p.labels + p.retrievals for p in players)
    typed = sum(1 for p in players for e in p.player.entries if e.get("by") == "user" and "text" in e)
    presses = sum(1 for p in players for e in p.player.entries if "callback_id" in e and e.get("by") != "bot")
    return {"tasks": tasks, "label_rounds": sum(p.labels for p in players),
            "retrievals": sum(p.retrievals for p in players), "removals": sum(p.removals for p in players),
            "bot_messages": player_sent + mod_sent, "edits": player_edits + mod_edits,
            "player_bot_messages": player_sent, "player_edits": player_edits,
            "moderator_bot_messages": mod_sent, "moderator_edits": mod_edits,
            "typed": typed, "presses": presses,
            "messages_per_task": round(player_sent / tasks, 2) if tasks else None}


async def run_ux(framework: str, database_url: str, workdir: Path, languages: list[str], labels: int = 6,
                 retrievals: int = 6, seed: int = 1, then=None) -> tuple[dict, dict]:
    """Start the sandbox and the game bot (in process, real HTTP), play the script, count.
    `then(played, shell, deliver_outbox)`, awaited after counting and before the bot stops (tests)."""
    from bots.app import make_shell
    from bots.conversation import Conversation
    from bots.media import Media
    from core.game import Game
    from offline.demo_pack import PACK_DIR
    from offline.oracle import database_oracle
    from offline.sandbox import Sandbox
    from storage.db import make_engine
    from storage.models import Query, QueryStatus
    from storage.settings import Settings

    db = make_engine(database_url)
    settings = Settings(storage={"database_url": database_url, "sticker_root": PACK_DIR}, rules={"gold_rate": 0.0},
                        _env_file=None)
    game = Game.open(db, settings, rng=random.Random(seed))
    conversation = Conversation(game, moderators={MODERATOR})
    media = Media(PACK_DIR, workdir / "media-cache")
    sandbox = Sandbox(rate_limits=False)
    sandbox.add_bot(TOKEN, "sticktionary_ux_bot")
    base = await sandbox.start()
    shell = make_shell(framework, TOKEN, base, game, conversation, media, pacing=False)
    await shell.start(poll_timeout=1, outbox=False)
    client = httpx.AsyncClient(base_url=base, timeout=30)

    async def deliver_outbox() -> None:
        while await shell.runtime.deliver_outbox_once():
            pass

    try:
        def to_review() -> int:
            with Session(db) as session:
                return session.exec(select(func.count()).select_from(Query).where(
                    Query.status == QueryStatus.NEEDS_REVIEW)).one()

        played = await play_script(client, TOKEN, database_oracle(db), deliver_outbox, shell.runtime.wait_finished,
                                   languages, labels, retrievals, to_review=to_review)
        stats = (await client.get("/sim/stats")).json()["result"]
        result = {"framework": framework, "languages": languages, **count(played["players"], played["moderator"]),
                  "to_review": played["to_review"], "reviewed": played["reviewed"],
                  "refused_calls": sum(v for k, v in stats.items() if k.startswith("error:4") and k.count(":") == 1)}
        if then is not None:
            await then(played, shell, deliver_outbox)
        return result, played
    finally:
        await client.aclose()
        await shell.stop()
        await sandbox.stop()
        db.dispose()


def bench_ux(framework: str = "ptb", languages: tuple[str, ...] = ("en", "en", "zh"), labels: int = 6,
             retrievals: int = 6) -> dict:
    from offline.demo_pack import load_demo_pack
    from storage.db import make_engine
    from storage.migrate import upgrade

    workdir = Path(tempfile.mkdtemp(prefix="sticktionary-ux-"))
    try:
        url = f"sqlite:///{workdir}/ux.sqlite3"
        db = make_engine(url)
        upgrade(db)
        load_demo_pack(db)
        db.dispose()
        result, _ = asyncio.run(run_ux(framework, url, workdir, list(languages), labels, retrievals))
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
