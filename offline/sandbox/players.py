"""Players simulated through the sandbox's HTTP simulation API: they read the screens the bot
sent and press the buttons those screens offer, as a person would."""

from __future__ import annotations

import asyncio
import time

import httpx


class SandboxPlayer:
    def __init__(self, client: httpx.AsyncClient, token: str, user_id: int, name: str = "Player",
                 language_code: str = "en", wait_finished=None):
        """`wait_finished(update_id)`, where the bot runs in the same process, says exactly when the
        bot is done with an update; without it a player waits until the bot goes quiet."""
        self.client, self.token, self.user_id = client, token, user_id
        self.wait_finished = wait_finished
        self.eager = True  # fetch the replies right after each action (a benchmark turns this off)
        self.name, self.language_code = name, language_code
        self.seen = 0  # transcript entries already read
        self.entries: list[dict] = []  # the transcript fetched so far

    async def _sim(self, action: str, **body) -> dict:
        response = await self.client.post(f"/sim/{action}", json={"token": self.token, "user_id": self.user_id,
                                                                   **body})
        response.raise_for_status()
        return response.json()["result"]

    async def transcript(self) -> list[dict]:
        """The whole chat as this player has seen it (only new entries are fetched)."""
        response = await self.client.get("/sim/transcript", params={"token": self.token, "user_id": self.user_id,
                                                                     "since": len(self.entries)})
        self.entries.extend(response.json()["result"])
        return self.entries

    async def send(self, text: str, settle: float = 0.15, timeout: float = 10) -> list[dict]:
        result = await self._sim("message", text=text, first_name=self.name, language_code=self.language_code)
        return await self._after(result["update_id"], settle, timeout)

    async def send_kind(self, kind: str, **kwargs) -> list[dict]:
        result = await self._sim("message", kind=kind, first_name=self.name, language_code=self.language_code)
        return await self._after(result["update_id"], **kwargs)

    async def edit(self, message_id: int, text: str) -> list[dict]:
        result = await self._sim("edit", message_id=message_id, text=text)
        return await self._after(result["update_id"])

    async def press(self, data: str, message_id: int | None = None, settle: float = 0.15,
                    timeout: float = 10) -> list[dict]:
        """Press a button by its callback data, on the newest message that offers it."""
        if message_id is None:
            message_id = self.message_with(data, await self.transcript())
        result = await self._sim("press", message_id=message_id, data=data)
        self.last_callback = result["callback_id"]
        return await self._after(result["update_id"], settle, timeout)

    async def _after(self, update_id: int, settle: float = 0.15, timeout: float = 10) -> list[dict]:
        if self.wait_finished is not None:
            await self.wait_finished(update_id, timeout)
            if not self.eager:
                return []  # read later, with the next look at the transcript
            return await self.replies(settle=0, timeout=0)
        return await self.replies(settle, timeout)

    async def answer_to_last_press(self) -> dict | None:
        for entry in reversed(await self.transcript()):
            if entry.get("callback_id") == self.last_callback:
                return entry
        return None

    @classmethod
    def message_with(cls, data: str, transcript: list[dict]) -> int:
        for entry in reversed(transcript):
            if data in cls.buttons(entry):
                return entry["message_id"]
        raise LookupError(f"no message offers the button {data!r}")

    async def replies(self, settle: float = 0.15, timeout: float = 10) -> list[dict]:
        """The bot's messages since the last read, once it has stopped sending for `settle` s."""
        deadline = time.monotonic() + timeout
        last_count, last_change = -1, time.monotonic()
        while True:
            transcript = await self.transcript()
            count = len(transcript)
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            new = [e for e in transcript[self.seen:] if e["by"] == "bot"]
            answered = all("answer" in e for e in transcript[self.seen:] if "callback_id" in e)
            if timeout == 0 or (new or answered and any("callback_id" in e for e in transcript[self.seen:])) \
                    and time.monotonic() - last_change >= settle:
                self.seen = count
                return new
            if time.monotonic() > deadline:
                self.seen = count
                return new
            await asyncio.sleep(0.02)

    @staticmethod
    def buttons(entry: dict) -> list[str]:
        return [b["callback_data"] for row in (entry.get("reply_markup") or {}).get("inline_keyboard", [])
                for b in row]


class AutoPlayer:
    """A simulated player who plays whole rounds through the sandbox: reads the newest screen and
    presses what it offers. `oracle` stands in for understanding: it tells the player which sticker
    a task is about (retrieval target, or the sticker being labeled), and the player is right with
    probability `skill`."""

    def __init__(self, player: SandboxPlayer, language: str, oracle, vocabulary: dict, rng, skill: float = 0.85,
                 think: float = 0.0):
        """`think`: mean seconds a player takes to read a screen before acting (0: no pause)."""
        self.player, self.language, self.oracle = player, language, oracle
        self.vocabulary, self.rng, self.skill, self.think = vocabulary, rng, skill, think
        self.interactions = 0
        self.latencies: list[float] = []

    async def _pause(self) -> None:
        """The player's think time before an action (subclasses pace it otherwise)."""
        if self.think:
            await asyncio.sleep(self.think * self.rng.uniform(0.5, 1.5))

    async def _timed(self, action) -> list[dict]:
        try:
            await self._pause()
        except asyncio.CancelledError:
            action.close()  # stopped while thinking: the action is never taken
            raise
        start = time.perf_counter()
        replies = await action
        self.latencies.append(time.perf_counter() - start)
        self.interactions += 1
        return replies

    async def join(self) -> None:
        await self._timed(self.player.send("/start"))
        await self._timed(self.player.press(f"lang:{self.language}"))
        await self._timed(self.player.press("consent"))

    async def step(self) -> str:
        """Play the screen in front of the player; returns what was done."""
        transcript = await self.player.transcript()
        screen = next((e for e in reversed(transcript) if e.get("by") == "bot" and self.player.buttons(e)), None)
        buttons = self.player.buttons(screen) if screen else []
        done = next((b for b in buttons if b.startswith("pd:")), None)
        if done:
            task_id = int(done.split(":")[1])
            candidates, target = self.oracle("retrieval", task_id)
            order = list(range(1, len(candidates) + 1))
            self.rng.shuffle(order)
            if target in candidates and self.rng.random() < self.skill:
                order.remove(candidates.index(target) + 1)
                order.insert(0, candidates.index(target) + 1)
            for position in order[: self.rng.randint(1, 2)]:
                await self._timed(self.player.press(f"pk:{task_id}:{position}", message_id=screen["message_id"]))
            await self._timed(self.player.press(done, message_id=screen["message_id"]))
            return "retriever"
        skip = next((b for b in buttons if b.startswith("lx:")), None)
        if skip:
            round_id = int(skip.split(":")[1])
            ideas = list(self.vocabulary.get((self.oracle("label", round_id), self.language), [])) or ["mood", "reaction"]
            self.rng.shuffle(ideas)
            for idea in ideas[:2]:
                await self._timed(self.player.send(idea))
            transcript = await self.player.transcript()
            submit = next((b for e in reversed(transcript) for b in self.player.buttons(e) if b == f"ls:{round_id}"),
                          None)
            await self._timed(self.player.press(submit or skip))
            return "labeler"
        await self._timed(self.player.send("/play"))
        return "idle"
