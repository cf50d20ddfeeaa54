"""Partners in empty seats: when a submitted round has had no human retriever for `partner_after`
seconds, a partner — a player row of kind "model" named after its model (`bm25`, `dense`), one per
language — answers it through the path a person's answer takes: a retrieval task of its own on the
round's grid (the same candidates a person would get), its picks drafted on it by its model
(core/partner_rankers.py), then submitted by the retrieval service, which scores it under the
partners' policy (core/game/partner_scoring.py).

Exactly one partner answer per waiting round, in any number of processes: the first step wins a
conditional UPDATE of the round (`partner_at IS NULL`, still submitted, no human retrieval
reserved) and only the winner creates the partner's task; the second step is the retrieval
service's conditional UPDATE of that task (open → answered), which has one winner too. A process
killed between the two leaves an open partner task, which the next pass of any process submits.
The round's `retrieval_count` is never touched, so it stays in the people's pool: a person who
comes later gets it and is scored as always.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select

from core.game.assignment import Assignment
from core.game.errors import GameError
from core.game.players import lock_player
from core.game.retrieval import Retrieval
from core.partner_rankers import partner_ranker
from core.search import SearchIndexes
from core.views import RankingOutcome
from core.vocabulary import LANGUAGES, ErrorCode
from storage.db import Transactions, insert_ignoring_conflicts
from storage.models import (
    LabelRound,
    Player,
    PlayerKind,
    Query,
    QueryStatus,
    RetrievalTask,
    RoundKind,
    RoundStatus,
    TaskQuery,
    TaskStatus,
)
from storage.settings import Settings


def partner_pseudonym(model: str, language: str) -> str:
    return f"model-{model}-{language}"


class Partners:
    def __init__(self, db: Transactions, settings: Settings, clock: Callable[[], datetime], rng: random.Random,
                 indexes: Callable[[], SearchIndexes], assignment: Assignment, retrieval: Retrieval) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.rng = rng
        self.assignment = assignment
        self.retrieval = retrieval
        self.ranker = partner_ranker(settings, indexes)
        self._ids: dict[tuple[str, str], int] = {}

    @property
    def enabled(self) -> bool:
        return self.settings.rules.partner_after > 0

    def partner_id(self, model: str, language: str) -> int:
        """The partner player of `model` in `language`, made on first use (the same row in every
        process: its pseudonym is unique)."""
        if language not in LANGUAGES:
            raise ValueError(f"no partners for language {language!r}")
        key = (model, language)
        if key not in self._ids:
            pseudonym = partner_pseudonym(model, language)
            now = self.clock()
            with self.db.write() as session:
                insert_ignoring_conflicts(session, Player.__table__, [dict(
                    pseudonym=pseudonym, display_name=model, language=language, kind=PlayerKind.MODEL,
                    consent_at=now, created_at=now, last_active_at=now, active=True, banned=False,
                    flagged=False, is_moderator=False, leaderboard_opt_in=False)], ["pseudonym"])
            with self.db.read() as session:
                self._ids[key] = session.exec(select(Player.id).where(Player.pseudonym == pseudonym)).one()
        return self._ids[key]

    def waiting_rounds(self, limit: int = 20) -> list[int]:
        """Submitted rounds that no person has taken for `partner_after` seconds and no partner
        answered yet, oldest first."""
        cutoff = self.clock() - timedelta(seconds=self.settings.rules.partner_after)
        with self.db.read() as session:
            return list(session.exec(select(LabelRound.id).where(*self._waiting(), LabelRound.submitted_at <= cutoff)
                                     .order_by(LabelRound.submitted_at, LabelRound.id).limit(limit)).all())

    @staticmethod
    def _waiting():
        return [LabelRound.kind == RoundKind.LABEL, LabelRound.status == RoundStatus.SUBMITTED,
                LabelRound.retrieval_count == 0, col(LabelRound.partner_at).is_(None)]

    def answer_waiting(self, limit: int = 20) -> int:
        """Answer the rounds waiting for a partner (at most `limit`), after finishing partner tasks a
        killed process left open; how many answers this call gave. Safe to run in every process at
        once: each round is answered once."""
        if not self.enabled:
            return 0
        answered = sum(self._submit(task_id, partner) is not None for task_id, partner in self.left_open())
        return answered + sum(self.answer_round(round_id) is not None for round_id in self.waiting_rounds(limit))

    def left_open(self, older_than: float = 60.0) -> list[tuple[int, int]]:
        """(task, partner) of partner tasks still open `older_than` seconds after they were made: their
        process died between drafting and submitting (a younger one is probably being submitted)."""
        cutoff = self.clock() - timedelta(seconds=older_than)
        with self.db.read() as session:
            return [tuple(row) for row in session.exec(
                select(RetrievalTask.id, RetrievalTask.retriever_id)
                .join(Player, col(Player.id) == RetrievalTask.retriever_id)
                .where(Player.kind == PlayerKind.MODEL, RetrievalTask.status == TaskStatus.OPEN,
                       RetrievalTask.created_at <= cutoff).order_by(RetrievalTask.id)).all()]

    def answer_round(self, round_id: int) -> RankingOutcome | None:
        """A partner's answer to the round, or None when it is not waiting (any more): taken by a
        person, answered by a partner in another process, closed."""
        drafted = self._draft(round_id)
        return self._submit(*drafted) if drafted is not None else None

    def _draft(self, round_id: int) -> tuple[int, int] | None:
        """Claim the round and make the partner's task on its grid, its picks drafted by the model:
        (task, partner), or None when the round is not waiting."""
        with self.db.read() as session:
            label_round = session.get(LabelRound, round_id)
            if label_round is None or label_round.language not in LANGUAGES:
                return None
            language = label_round.language
        partners = {name: self.partner_id(name, language) for name in {self.ranker.name, "bm25"}}
        with self.db.write() as session:
            for partner in sorted(partners.values()):  # lock order: the players first
                lock_player(session, partner)
            claimed = session.execute(update(LabelRound).where(LabelRound.id == round_id, *self._waiting())
                                      .values(partner_at=self.clock())
                                      .execution_options(synchronize_session=False)).rowcount
            if not claimed:
                return None
            label_round = session.get(LabelRound, round_id)
            rows = session.exec(select(Query.id, Query.text).where(
                Query.label_round_id == round_id, col(Query.status) != QueryStatus.DISCARDED).order_by(Query.id)).all()
            query_ids, texts = [row.id for row in rows], [row.text for row in rows]
            if not query_ids:  # every query was discarded: nothing to rank from, and no partner later
                return None
            seed = self.rng.getrandbits(62)
            candidates = self.assignment.candidates(session, language, label_round.sticker_id, query_ids, seed)
            model, ranked = self.ranker.rank(session, language, texts, candidates)
            task = RetrievalTask(retriever_id=partners[model], label_round_id=round_id,
                                 sticker_id=label_round.sticker_id, language=language, query_ids=query_ids,
                                 candidate_ids=candidates, picks=ranked[:self.settings.rules.max_picks], seed=seed,
                                 created_at=self.clock())
            session.add(task)
            session.flush()
            for query_id in query_ids:
                session.add(TaskQuery(task_id=task.id, query_id=query_id))
            return task.id, partners[model]

    def _submit(self, task_id: int, partner: int) -> RankingOutcome | None:
        """The retrieval service submits the partner's drafted picks: once, whoever calls."""
        try:
            return self.retrieval.submit_drafted_ranking(partner, task_id)
        except GameError as error:
            if error.code == ErrorCode.TASK_CLOSED:  # another process submitted it first
                return None
            raise


__all__ = ["Partners", "partner_pseudonym"]
