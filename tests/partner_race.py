"""One process of the partners' race (tests/test_partners.py): opens the game on a database, says
it is ready, waits for the go file, then answers waiting rounds until none is left, and prints how
many it answered. Run as `python -m tests.partner_race URL READY_FILE GO_FILE`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from core.game import Game
from storage.db import make_engine
from storage.settings import Settings


def main(url: str, ready: str, go: str) -> None:
    db = make_engine(url)
    game = Game.open(db, Settings(storage={"database_url": url}, rules={"partner_after": 1}, _env_file=None))
    Path(ready).touch()
    deadline = time.monotonic() + 120
    while not Path(go).exists():
        if time.monotonic() > deadline:
            raise SystemExit("no go file")
        time.sleep(0.01)
    answered = 0
    while True:
        # One round at a time, so both processes keep meeting on the same rounds.
        batch = game.partners.answer_waiting(limit=1)
        answered += batch
        if not batch and not game.partners.waiting_rounds(limit=1):
            break
    print(answered, flush=True)
    db.dispose()


if __name__ == "__main__":
    main(*sys.argv[1:4])
