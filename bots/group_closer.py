"""The closer of group rounds: every running bot process looks once a second for rounds whose time
is up and closes them (core/game/group_rounds.py). Any number of processes may look at once: the
close is a conditional UPDATE that exactly one of them wins, and a round left open by a process
that died is closed by whichever looks next, after a restart too."""

from __future__ import annotations

import asyncio
import logging

from bots.game_threads import GameThreads

log = logging.getLogger(__name__)

CLOSE_EVERY_SECONDS = 1.0


async def close_group_rounds(game, threads: GameThreads, trouble, interval: float = CLOSE_EVERY_SECONDS) -> None:
    """Until cancelled: close the rounds that are due. `trouble(error, message)` hears of failures
    (the database away is an outage, said once); the next look tries again."""
    while True:
        try:
            closed = await threads.run(game.group_rounds.close_due)
            if closed:
                log.info("closed %d group round(s)", closed)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - a failed look is tried again at the next one
            trouble(error, "could not close group rounds")
        await asyncio.sleep(interval)
