"""The retriever's task: picks toggled on the grid, a ranking submitted (scored exactly once: the
conditional UPDATE that answers the task has one winner), a skip, or a suggested query."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, select

from core.game.errors import GameError
from core.game.expiry import close_tasks
from core.game.labeling import checked_query_text, refuse_taboo
from core.game.play_sessions import finish_task
from core.game.players import lock_player, playable_player
from core.game.scoring import Scoring
from core.game.views import retrieval_view
from core.views import QueryView, RankingOutcome, RetrievalTaskView
from core.vocabulary import ErrorCode, Role
from storage.db import Transactions
from storage.models import (
    LabelRound,
    Query,
    QuerySource,
    QueryStatus,
    RetrievalTask,
    RoundKind,
    RoundStatus,
    TaskStatus,
)
from storage.settings import Settings


def own_open_task(session: Session, player_id: int, task_id: int) -> RetrievalTask:
    """The player's open task, locked for this transaction."""
    task = session.exec(select(RetrievalTask).where(RetrievalTask.id == task_id).with_for_update()).first()
    if task is None or task.retriever_id != player_id:
        raise GameError(ErrorCode.NOT_YOUR_TASK)
    if task.status != TaskStatus.OPEN:
        raise GameError(ErrorCode.TASK_CLOSED, task.status)
    return task


class Retrieval:
    def __init__(self, db: Transactions, settings: Settings, clock: Callable[[], datetime], scoring: Scoring) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.scoring = scoring

    def submit_ranking(self, player_id: int, task_id: int, picks: Sequence[int]) -> RankingOutcome:
        """Rank up to three candidates (sticker ids, best first). Scores exactly once."""
        return self._answer(player_id, task_id, picks)

    def submit_drafted_ranking(self, player_id: int, task_id: int) -> RankingOutcome:
        """Submit the picks made with toggle_pick: those on the task when its lock is taken, so a
        pick that committed just before is never lost."""
        return self._answer(player_id, task_id, None)

    def _answer(self, player_id: int, task_id: int, picks: Sequence[int] | None) -> RankingOutcome:
        """Answer the task with `picks`, or (None) with the picks drafted on it, read under its lock."""
        with self.db.write() as session:
            playable_player(session, player_id, self.clock())
            task = own_open_task(session, player_id, task_id)
            picks = self._checked_picks(task, list(task.picks) if picks is None else picks)
            hit_rank = picks.index(task.sticker_id) + 1 if task.sticker_id in picks else None
            now = self.clock()
            won = session.execute(
                update(RetrievalTask)
                .where(RetrievalTask.id == task_id, RetrievalTask.retriever_id == player_id,
                       RetrievalTask.status == TaskStatus.OPEN)
                .values(status=TaskStatus.ANSWERED, picks=picks, hit_rank=hit_rank, answered_at=now)
            ).rowcount
            if not won:
                raise GameError(ErrorCode.TASK_CLOSED, "answered")
            # the UPDATE also set status, picks and hit_rank on `task` (synchronize_session)
            outcome = self.scoring.score(session, task)
            finish_task(session, player_id, Role.RETRIEVER, task.language, self.clock(),
                        self.settings.rules.session_gap_minutes)
            return outcome

    def _checked_picks(self, task: RetrievalTask, picks: Sequence[int]) -> list[int]:
        if not isinstance(picks, list | tuple) or not picks:
            raise GameError(ErrorCode.NO_PICKS)
        if len(picks) > self.settings.rules.max_picks:
            raise GameError(ErrorCode.TOO_MANY_PICKS, str(self.settings.rules.max_picks))
        if any(not isinstance(p, int) or isinstance(p, bool) for p in picks):
            raise GameError(ErrorCode.BAD_PICK)
        if len(set(picks)) != len(picks):
            raise GameError(ErrorCode.REPEATED_PICK)
        if any(p not in task.candidate_ids for p in picks):
            raise GameError(ErrorCode.PICK_NOT_CANDIDATE)
        return list(picks)

    def toggle_pick(self, player_id: int, task_id: int, position: int) -> RetrievalTaskView:
        """Grid button `position` (1-based): adds that candidate as the next rank, or removes it."""
        with self.db.write() as session:
            playable_player(session, player_id, self.clock())
            task = own_open_task(session, player_id, task_id)
            if not isinstance(position, int) or not 1 <= position <= len(task.candidate_ids):
                raise GameError(ErrorCode.PICK_NOT_CANDIDATE)
            sticker_id = task.candidate_ids[position - 1]
            picks = list(task.picks)
            if sticker_id in picks:
                picks.remove(sticker_id)
            elif len(picks) >= self.settings.rules.max_picks:
                raise GameError(ErrorCode.TOO_MANY_PICKS, str(self.settings.rules.max_picks))
            else:
                picks.append(sticker_id)
            task.picks = picks
            session.add(task)
            session.flush()
            return retrieval_view(session, task)

    def undo_pick(self, player_id: int, task_id: int) -> RetrievalTaskView:
        with self.db.write() as session:
            lock_player(session, player_id)
            task = own_open_task(session, player_id, task_id)
            task.picks = list(task.picks)[:-1]
            session.add(task)
            session.flush()
            return retrieval_view(session, task)

    def skip_task(self, player_id: int, task_id: int) -> None:
        with self.db.write() as session:
            lock_player(session, player_id)
            task = own_open_task(session, player_id, task_id)
            if not close_tasks(session, TaskStatus.SKIPPED, RetrievalTask.id == task_id, answered_at=self.clock()):
                raise GameError(ErrorCode.TASK_CLOSED, "answered")
            finish_task(session, player_id, Role.RETRIEVER, task.language, self.clock(),
                        self.settings.rules.session_gap_minutes, counts=False)

    def suggest_query(self, player_id: int, task_id: int, sticker_id: int, text: str | None) -> QueryView:
        """A retriever proposes a query for a candidate; it waits for a later retrieval like any other."""
        with self.db.write() as session:
            playable_player(session, player_id, self.clock())
            task = session.get(RetrievalTask, task_id)
            if task is None or task.retriever_id != player_id:
                raise GameError(ErrorCode.NOT_YOUR_TASK)
            if sticker_id not in task.candidate_ids:
                raise GameError(ErrorCode.PICK_NOT_CANDIDATE)
            cleaned, normalized = checked_query_text(text, self.settings.rules.max_query_chars)
            refuse_taboo(session, sticker_id, task.language, normalized)
            label_round = LabelRound(kind=RoundKind.SUGGESTION, player_id=player_id, sticker_id=sticker_id,
                                     language=task.language, status=RoundStatus.SUBMITTED,
                                     created_at=self.clock(), submitted_at=self.clock())
            session.add(label_round)
            session.flush()
            query = Query(sticker_id=sticker_id, language=task.language, text=cleaned, normalized_text=normalized,
                          author_id=player_id, label_round_id=label_round.id, source=QuerySource.SUGGESTION,
                          status=QueryStatus.PENDING, created_at=self.clock())
            session.add(query)
            session.flush()
            return QueryView(query.id, query.text, query.status)
