"""Scoring and the ledger: a hit at rank r scores both sides (settings.rules.points_by_rank), queries a
retriever found become validated, resonant queries earn their author a bonus, gold checks flag
players. The point ledger (ScoreEvent, one row per award with a unique idempotency key) is the only
source of scores: an award written twice is one award."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from core.game.partner_scoring import score_partner_answer
from core.game.views import stickers
from core.outbox import Outbox
from core.search_log import record_search_change, search_tokens
from core.views import RankingOutcome
from core.vocabulary import NoticeKind
from storage.db import insert_ignoring_conflicts
from storage.models import (
    LabelRound,
    Player,
    PlayerKind,
    Query,
    QueryStatus,
    RetrievalTask,
    ScoreEvent,
    TaskQuery,
    TaskStatus,
)
from storage.settings import Settings


class Scoring:
    def __init__(self, settings: Settings, clock: Callable[[], datetime], outbox: Outbox) -> None:
        self.settings = settings
        self.clock = clock
        self.outbox = outbox

    def points_for(self, hit_rank: int | None) -> int:
        """What a find at `hit_rank` (1-based; None: a miss) is worth to each side."""
        return self.settings.rules.points_by_rank[hit_rank - 1] if hit_rank else 0

    def award(self, session: Session, key: str, player_id: int, language: str, points: int, reason: str,
              task_id: int | None = None, query_id: int | None = None) -> bool:
        """One ledger row, once per `key`; True when this call wrote it."""
        if points <= 0:
            return False
        inserted = insert_ignoring_conflicts(session, ScoreEvent.__table__, [dict(
            idempotency_key=key, player_id=player_id, language=language, points=points, reason=reason,
            retrieval_task_id=task_id, query_id=query_id, created_at=self.clock())], ["idempotency_key"])
        return inserted == 1

    def score(self, session: Session, task: RetrievalTask, points: int | None = None) -> RankingOutcome:
        """Everything an answered task earns and causes, in the answering transaction: the
        retriever's and labeler's points, validation or review of the queries, the labeler's
        feedback notice, the retriever's gold check. `points`: what the find is worth when it is not
        its rank's (a group race pays by speed, core/game/group_rounds.py)."""
        retriever = session.get(Player, task.retriever_id)
        if retriever.kind == PlayerKind.MODEL:  # a partner: its own policy (core/game/partner_scoring.py)
            return score_partner_answer(session, task, retriever, self.settings, self.outbox, self.award)
        retriever_points = self.points_for(task.hit_rank) if points is None else points
        self.award(session, f"task:{task.id}:retriever", task.retriever_id, task.language, retriever_points,
                   "gold_hit" if task.is_gold else "retriever_hit", task_id=task.id)
        validated, to_review = [], False
        if task.is_gold:
            self._check_gold(session, task.retriever_id)
        else:
            label_round = session.get(LabelRound, task.label_round_id)
            labeler_id = label_round.player_id
            if task.hit_rank:
                self.award(session, f"task:{task.id}:labeler", labeler_id, task.language, retriever_points,
                           "labeler_hit", task_id=task.id)
                validated = self._count_hit(session, task)
            else:
                to_review = bool(session.execute(
                    update(Query).where(col(Query.id).in_(task.query_ids), Query.status == QueryStatus.PENDING)
                    .values(status=QueryStatus.NEEDS_REVIEW).returning(Query.id)
                    .execution_options(synchronize_session=False)).all())
            # The labeler's own queries name the sticker in the notice: they know it by them.
            texts = dict(session.exec(select(Query.id, Query.text).where(col(Query.id).in_(task.query_ids))).all())
            self.outbox.enqueue(
                session, f"feedback:task:{task.id}",
                NoticeKind.FEEDBACK_HIT if task.hit_rank else NoticeKind.FEEDBACK_MISS,
                {"task_id": task.id, "round_id": label_round.id, "sticker_id": task.sticker_id,
                 "rank": task.hit_rank, "points": retriever_points, "language": task.language,
                 "queries": [texts[i] for i in task.query_ids if i in texts]},
                player_id=labeler_id)
        target = stickers(session, [task.sticker_id])[0]
        return RankingOutcome(task.id, task.hit_rank, target, retriever_points, validated, to_review)

    def _count_hit(self, session: Session, task: RetrievalTask) -> list[int]:
        """The retriever found the sticker from the task's queries: pending or disputed ones become
        validated, and each query counts this retriever once. Both are conditional UPDATEs on the
        row's current values, so concurrent hits all count, a moderator's concurrent decision stands,
        and the resonance bonus follows the count the database returns. One query at a time, in id
        order, so concurrent hits lock the rows in the same order."""
        now, validated = self.clock(), []
        for query_id in sorted(task.query_ids):
            if session.execute(update(Query).where(
                    Query.id == query_id, col(Query.status).in_((QueryStatus.PENDING, QueryStatus.NEEDS_REVIEW)))
                    .values(status=QueryStatus.VALIDATED, validated_at=now).returning(Query.id)
                    .execution_options(synchronize_session=False)).first():
                validated.append(query_id)
            # Resonance counts distinct retrievers. The retriever's row is locked by the caller, so
            # their own earlier hits are all committed and visible here.
            earlier_hit = (select(TaskQuery.task_id)
                           .join(RetrievalTask, col(RetrievalTask.id) == TaskQuery.task_id)
                           .where(TaskQuery.query_id == query_id, RetrievalTask.retriever_id == task.retriever_id,
                                  RetrievalTask.id != task.id, RetrievalTask.status == TaskStatus.ANSWERED,
                                  col(RetrievalTask.hit_rank).is_not(None), col(RetrievalTask.is_gold).is_(False)))
            counted = session.execute(update(Query).where(Query.id == query_id, ~earlier_hit.exists())
                                      .values(hit_count=Query.hit_count + 1)
                                      .returning(Query.hit_count, Query.author_id)
                                      .execution_options(synchronize_session=False)).first()
            if counted and counted.author_id and counted.hit_count >= self.settings.rules.resonance_retrievers:
                self.award(session, f"resonance:{query_id}", counted.author_id, task.language,
                           self.settings.rules.resonance_bonus, "resonance", query_id=query_id)
        if validated:
            rows = session.exec(select(Query.id, Query.language, Query.sticker_id, Query.text, Query.corrected_text)
                                .where(col(Query.id).in_(validated))).all()
            for query_id, _language, _sticker, text, corrected in rows:  # tokenized once, not at every start-up
                session.execute(update(Query).where(Query.id == query_id)
                                .values(search_tokens=search_tokens(corrected or text))
                                .execution_options(synchronize_session=False))
            for language in {row.language for row in rows}:
                record_search_change(session, language, sorted({row.sticker_id for row in rows
                                                                if row.language == language}), "validated")
        return validated

    def _check_gold(self, session: Session, player_id: int) -> None:
        """A player who keeps failing known-answer tasks is flagged to the moderators, once."""
        answered, hits = session.exec(select(func.count(), func.count(RetrievalTask.hit_rank)).where(
            RetrievalTask.retriever_id == player_id, RetrievalTask.is_gold,
            RetrievalTask.status == TaskStatus.ANSWERED)).one()
        failures = answered - hits
        if failures < self.settings.rules.gold_flag_failures or hits / answered >= self.settings.rules.gold_flag_accuracy:
            return
        flagged = session.execute(update(Player).where(Player.id == player_id, col(Player.flagged).is_(False))
                                  .values(flagged=True)).rowcount
        if flagged:
            player = session.get(Player, player_id)
            self.outbox.enqueue(session, f"flag:{player_id}", NoticeKind.MODERATOR_FLAG,
                                {"player_id": player_id, "pseudonym": player.pseudonym, "gold_answered": answered,
                                 "gold_hits": hits})
