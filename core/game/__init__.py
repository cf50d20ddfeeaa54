"""The game, one room per feature. `Game` composes the services; callers use them by name:

| attribute | module | what |
|---|---|---|
| `players` | players.py | first contact, language, consent, nickname, opt-ins; the player row lock |
| `awaited` | awaited.py | what a player's next text answers (a suggestion, a correction) |
| `assignment` | assignment.py | the open task or a new one, alternating roles; the retrieval grid |
| `labeling` | labeling.py | the labeler's round: queries (taboo, visual-only), submit, skip |
| `previews` | views.py | the labeler's preliminary search result (no side effects) |
| `retrieval` | retrieval.py | the retriever's picks, ranking, skip, suggested queries |
| `scoring` | scoring.py | points, the ledger, validation, resonance, gold checks |
| `standings` | standings.py | totals, ranks, leaderboards (needs neither search nor outbox) |
| `moderation` | moderation.py | the review queue, chat contexts, the moderator policy |
| `expiry` | expiry.py | abandoned rounds and tasks |
| `group_rounds` | group_rounds.py | rounds raced in group chats: posting, picks, closing, the group's table |
| `prizes` | core/game/prizes.py | tallies, the prize list, leaderboard posts |
| `inline` | inline_search.py | inline sticker search (`@bot so tired`) and the choices of consenting players |
| `partners` | partners.py | model players answering rounds no person took (partner_scoring.py: their points) |

Every service works on the `Transactions` it is given (storage/db.py), never on a hidden session:
`Game.db` is the `Database`, where each public method is one transaction of its own, and
`game.within(unit)` is the same game on one update's `UnitOfWork`, where each method is a savepoint
of the update's transaction (a step the rules refuse undoes only itself) and reads see what the
update wrote so far. The bots handle every update that way (bots/inbox.py).

Rules that must hold under concurrency are enforced by the database, not by Python state: a task is
answered by a conditional UPDATE that only one caller can win, every award goes through the ledger's
unique idempotency key, and a player's next task is chosen while holding that player's row lock
(SQLite: BEGIN IMMEDIATE). Every status change is an UPDATE … WHERE status = <old> whose rowcount or
RETURNING decides what follows, and every counter is changed in SQL (x = x + 1 … RETURNING x), never
read and written back. Locks are taken in one order: player, then their round or task, then the rows
those touch.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from core.game.assignment import Assignment
from core.game.awaited import AwaitedText
from core.game.errors import GameError
from core.game.expiry import Expiry
from core.game.group_rounds import GroupRounds
from core.game.inline_search import InlineSearch
from core.game.labeling import Labeling, context_priority
from core.game.moderation import Moderation, ModeratorPolicy
from core.game.partners import Partners
from core.game.players import Players
from core.game.prizes import Prizes
from core.game.retrieval import Retrieval
from core.game.scoring import Scoring
from core.game.standings import Standings
from core.game.views import Previews
from core.outbox import Outbox
from core.search import SearchIndexes
from core.search_follower import SearchFollower
from storage.db import Database, Transactions, UnitOfWork
from storage.models import utcnow
from storage.settings import Settings


def game_outbox(db: Transactions, settings: Settings, clock: Callable[[], datetime] = utcnow) -> Outbox:
    """The outbox the game and the jobs write notices into, with the configured delivery policy."""
    return Outbox(db, clock, max_attempts=settings.delivery.outbox_max_attempts,
                  lease_seconds=settings.delivery.outbox_lease_seconds)


class Game:
    """The services of one game on one database, sharing its clock, outbox and search indexes.

    `db` is where the services run their steps: the `Database` (each step its own transaction), or
    in the game `within(unit)` returns, one update's `UnitOfWork` (each step a savepoint of it)."""

    def __init__(self, db: Transactions, settings: Settings, *, search: SearchFollower | SearchIndexes,
                 outbox: Outbox, clock: Callable[[], datetime] = utcnow, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        # A follower's indexes follow the database's change log (core/search_follower.py); fixed
        # indexes (processes that never search) stay as they are.
        self.search = search if isinstance(search, SearchFollower) else None
        self._fixed_indexes = search if isinstance(search, SearchIndexes) else None
        self.moderators = ModeratorPolicy()
        self.previews = Previews(lambda: self.indexes, settings.rules.preview_hits)
        self._compose(db, outbox)

    def _compose(self, db: Transactions, outbox: Outbox) -> None:
        settings, clock = self.settings, self.clock
        self.db = db
        self.outbox = outbox
        self.players = Players(db, clock)
        self.awaited = AwaitedText(db, self.moderators)
        self.assignment = Assignment(db, settings, clock, self.rng, lambda: self.indexes, self.previews)
        self.labeling = Labeling(db, settings, clock, self.previews)
        self.scoring = Scoring(settings, clock, outbox)
        self.retrieval = Retrieval(db, settings, clock, self.scoring)
        self.standings = Standings(db, clock)
        self.moderation = Moderation(db, settings, clock, outbox, self.moderators)
        self.expiry = Expiry(db, settings, clock, outbox)
        self.prizes = Prizes(settings, self.standings, outbox, self.moderators)
        self.group_rounds = GroupRounds(db, settings, clock, self.rng, self.assignment, self.scoring, outbox)
        self.inline = InlineSearch(db, lambda: self.indexes, clock)
        self.partners = Partners(db, settings, clock, self.rng, lambda: self.indexes, self.assignment, self.retrieval)

    def within(self, unit: UnitOfWork) -> Game:
        """The same game with every service (and the outbox) working in `unit`: what one update
        does is committed together, with the update marked handled (bots/inbox.py). Cheap: the
        search indexes, clock, rng and moderator policy are shared, not copied."""
        bound = copy.copy(self)
        bound._compose(unit, self.outbox.within(unit))
        return bound

    @classmethod
    def open(cls, engine: Engine, settings: Settings, *, clock: Callable[[], datetime] = utcnow,
             rng: random.Random | None = None, indexes: SearchIndexes | None = None) -> Game:
        """A game on `engine` with its own outbox and search indexes loaded from the database (or
        `indexes`, kept as they are)."""
        if indexes is None:
            search = SearchFollower(engine)
            search.load()
        db = Database(engine)
        return cls(db, settings, search=indexes if indexes is not None else search,
                   outbox=game_outbox(db, settings, clock), clock=clock, rng=rng)

    @property
    def indexes(self) -> SearchIndexes:
        """Every language's index, caught up with the change log when the last look is older than
        the poll interval."""
        if self.search is None:
            return self._fixed_indexes
        self.search.catch_up_if_due()
        return self.search.indexes

    def follow_search_changes(self) -> None:
        """Poll the change log from a background thread too (long-running processes: the bots)."""
        if self.search is not None:
            self.search.start()

    def close(self) -> None:
        if self.search is not None:
            self.search.stop()


__all__ = ["Game", "GameError", "ModeratorPolicy", "Standings", "context_priority", "game_outbox"]
