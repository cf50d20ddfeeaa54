"""Task assignment: a player's open task, or a new one in the other role than last time. New work
is chosen while holding the player's row lock; a submitted round's retrieval slots are reserved by a
conditional UPDATE, so two players cannot over-book it."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from core.game.players import open_work, playable_player
from core.game.views import Previews, taken_queries
from core.search import SearchIndexes
from core.text import tokenize
from core.views import LabelTaskView, RetrievalTaskView
from core.vocabulary import Role, other_role
from storage.db import Transactions
from storage.models import (
    USABLE_QUERY_STATUSES,
    ChatContext,
    ContextStatus,
    LabelRound,
    Player,
    Query,
    QueryStatus,
    RetrievalTask,
    RoundStatus,
    TaskQuery,
)
from storage.settings import Settings


def labeled_sticker_ids(player_id: int):
    return select(LabelRound.sticker_id).where(LabelRound.player_id == player_id)


def already_targeted(player_id: int):
    return select(RetrievalTask.sticker_id).where(RetrievalTask.retriever_id == player_id)


class Assignment:
    def __init__(self, db: Transactions, settings: Settings, clock: Callable[[], datetime], rng: random.Random,
                 indexes: Callable[[], SearchIndexes], previews: Previews) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.rng = rng
        self.indexes = indexes
        self.previews = previews

    def current_task(self, player_id: int) -> LabelTaskView | RetrievalTaskView | None:
        with self.db.read() as session:
            work = open_work(session, player_id)
            return self.previews.task_view(session, work) if work else None

    def next_task(self, player_id: int, prefer: str | None = None) -> LabelTaskView | RetrievalTaskView | None:
        """The player's open task, or a new one: the other role than last time when one exists."""
        with self.db.write() as session:
            player = playable_player(session, player_id, self.clock())
            work = open_work(session, player_id)
            if work is not None:
                return self.previews.task_view(session, work)
            first = Role(prefer) if prefer else other_role(player.last_role)
            for role in (first, other_role(first)):
                created = (self._new_label_round(session, player) if role == Role.LABELER
                           else self._new_retrieval_task(session, player))
                if created is not None:
                    session.flush()
                    return self.previews.task_view(session, created)
            return None

    def _new_label_round(self, session: Session, player: Player) -> LabelRound | None:
        base = select(ChatContext).where(
            ChatContext.language == player.language,
            ChatContext.status == ContextStatus.APPROVED,
            col(ChatContext.sticker_id).not_in(labeled_sticker_ids(player.id)),
        )
        candidates = base.subquery()
        lowest = session.exec(select(func.min(candidates.c.priority))).first()
        if lowest is None:
            return None
        # Among the least-labelled stickers, a random one: players see variety.
        pool = session.exec(base.where(ChatContext.priority == lowest).with_only_columns(
            ChatContext.id).order_by(ChatContext.id).limit(200)).all()
        context = session.get(ChatContext, self.rng.choice(pool))
        label_round = LabelRound(player_id=player.id, sticker_id=context.sticker_id, context_id=context.id,
                                 language=player.language, created_at=self.clock())
        # The taboo list of the round's first screen (the player has no query yet), for the export.
        label_round.taboo_shown = [query_id for query_id, _ in taken_queries(session, label_round, set())]
        session.add(label_round)
        return label_round

    def _new_retrieval_task(self, session: Session, player: Player) -> RetrievalTask | None:
        language = player.language
        task = None
        if self.rng.random() >= self.settings.rules.gold_rate:
            task = self._task_from_submitted_round(session, player)
        if task is None:
            task = self._gold_task(session, player) or self._task_from_submitted_round(session, player)
        if task is None:
            return None
        task.seed = self.rng.getrandbits(62)
        task.candidate_ids = self.candidates(session, language, task.sticker_id, task.query_ids, task.seed)
        session.add(task)
        session.flush()
        for query_id in task.query_ids:
            session.add(TaskQuery(task_id=task.id, query_id=query_id))
        return task

    def _task_from_submitted_round(self, session: Session, player: Player) -> RetrievalTask | None:
        candidates = session.exec(
            select(LabelRound).where(
                LabelRound.language == player.language,
                LabelRound.status == RoundStatus.SUBMITTED,
                LabelRound.player_id != player.id,
                LabelRound.retrieval_count < self.settings.rules.retrievals_per_round,
                # never a sticker the player labeled, nor one they already looked for
                col(LabelRound.sticker_id).not_in(labeled_sticker_ids(player.id)),
                col(LabelRound.sticker_id).not_in(already_targeted(player.id)),
            ).order_by(LabelRound.retrieval_count, LabelRound.submitted_at, LabelRound.id).limit(1)
        ).all()
        if not candidates:
            return None
        label_round = candidates[0]
        # Reserve the round; the conditional update makes two players unable to over-book it.
        reserved = session.execute(
            update(LabelRound)
            .where(LabelRound.id == label_round.id,
                   LabelRound.retrieval_count < self.settings.rules.retrievals_per_round)
            .values(retrieval_count=LabelRound.retrieval_count + 1)
        ).rowcount
        if not reserved:
            return None
        query_ids = session.exec(
            select(Query.id).where(Query.label_round_id == label_round.id,
                                   col(Query.status) != QueryStatus.DISCARDED).order_by(Query.id)
        ).all()
        return RetrievalTask(retriever_id=player.id, label_round_id=label_round.id,
                             sticker_id=label_round.sticker_id, language=player.language,
                             query_ids=list(query_ids), created_at=self.clock())

    def _gold_task(self, session: Session, player: Player) -> RetrievalTask | None:
        """A known-answer task from validated data: checks the retriever, not the labeler."""
        index = self.indexes()[player.language]
        if len(index) < self.settings.rules.candidates:
            return None
        excluded = set(session.exec(labeled_sticker_ids(player.id)).all())
        excluded |= set(session.exec(already_targeted(player.id)).all())
        pool = [s for s in index.sticker_ids() if s not in excluded]
        if not pool:
            return None
        sticker_id = self.rng.choice(pool)
        queries = session.exec(
            select(Query.id).where(Query.sticker_id == sticker_id, Query.language == player.language,
                                   col(Query.status).in_(USABLE_QUERY_STATUSES)).order_by(Query.id)
        ).all()
        if not queries:
            return None
        shown = sorted(self.rng.sample(list(queries), min(3, len(queries))))
        return RetrievalTask(retriever_id=player.id, sticker_id=sticker_id, language=player.language,
                             query_ids=shown, is_gold=True, created_at=self.clock())

    def candidates(self, session: Session, language: str, target: int, query_ids: Sequence[int],
                   seed: int) -> list[int]:
        """Target + hard negatives (BM25 top hits for the shown queries) + random same-language
        stickers, shuffled by the task's seed so the same task always shows the same grid."""
        total = self.settings.rules.candidates
        rng = random.Random(seed)
        indexes = self.indexes()
        texts = session.exec(select(Query.text, Query.corrected_text).where(col(Query.id).in_(query_ids))).all()
        tokens = [t for text, corrected in texts for t in tokenize(corrected or text)]
        hard_wanted = max(0, total - 1 - self.settings.rules.random_distractors)
        result = indexes[language].search(tokens, k=hard_wanted + 1)
        chosen = [h.sticker_id for h in result.hits if h.sticker_id != target][:hard_wanted]
        taken = set(chosen) | {target}
        need = total - 1 - len(chosen)
        if need:
            pool = session.exec(
                select(ChatContext.sticker_id).where(ChatContext.language == language,
                                                     col(ChatContext.status) != ContextStatus.REJECTED)
            ).all()
            pool = sorted(set(pool) | set(indexes[language].sticker_ids()))
            rng.shuffle(pool)
            for sticker_id in pool:
                if need == 0:
                    break
                if sticker_id not in taken:
                    chosen.append(sticker_id)
                    taken.add(sticker_id)
                    need -= 1
        candidates = [target, *chosen]
        rng.shuffle(candidates)
        return candidates
