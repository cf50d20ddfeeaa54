"""The partners' seat in a bot process: every `partner_poll_seconds`, the rounds that have waited
`partner_after` seconds for a person get a partner's answer (core/game/partners.py), off the event
loop in the game's threads. Every process of a deployment may run one (and the `partners` job too):
the engine lets exactly one answer each round. The answer's feedback reaches the labeler through the
outbox like any other."""

from __future__ import annotations

import asyncio
import logging

from bots.game_threads import GameThreads
from core.game import Game
from storage.outage import DATABASE, is_database_outage, outage

log = logging.getLogger(__name__)


class PartnerSeat:
    def __init__(self, game: Game, threads: GameThreads, interval: float | None = None) -> None:
        self.game = game
        self.threads = threads
        self.interval = interval if interval is not None else game.settings.rules.partner_poll_seconds
        self._task: asyncio.Task | None = None
        self._database = outage(DATABASE)
        self.answered = 0

    async def answer_once(self) -> int:
        answered = await self.threads.run(self.game.partners.answer_waiting)
        self.answered += answered
        return answered

    async def run(self) -> None:
        while True:
            try:
                await self.answer_once()
                self._database.end()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the seat keeps going; the next round tries again
                if is_database_outage(error):
                    self._database.begin(error)
                else:
                    log.exception("a partner's answer failed; trying again in %.1f s", self.interval)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self.game.partners.enabled and self._task is None:
            self._task = asyncio.create_task(self.run(), name="partner-seat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
