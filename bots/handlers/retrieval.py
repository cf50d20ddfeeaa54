"""Retrieval: the retriever picks grid numbers in rank order, undoes, submits or skips; and may
suggest a better query for a candidate ("3 a better query"), the text that answers the prompt."""

from __future__ import annotations

import re

from bots import callbacks
from bots.handlers.play import finish, next_screen, progress
from bots.messages.replies import SendText
from bots.router import Router, Turn
from bots.screens import retrieval
from core.game import GameError
from core.views import RetrievalTaskView
from core.vocabulary import AwaitedInput, ErrorCode

router = Router()

# "<grid number> <query>"
SUGGESTION = re.compile(r"^\s*(\d{1,2})\s+(.+)$", re.S)


def _edit_grid(turn: Turn, task: RetrievalTaskView) -> None:
    turn.say(retrieval.edited(task, progress(turn), turn.t, turn.incoming.message_id))


@router.button(callbacks.TogglePick)
def pick_toggled(turn: Turn, button: callbacks.TogglePick) -> None:
    _edit_grid(turn, turn.game.retrieval.toggle_pick(turn.player.id, button.task_id, button.position))


@router.button(callbacks.UndoPick)
def pick_undone(turn: Turn, button: callbacks.UndoPick) -> None:
    _edit_grid(turn, turn.game.retrieval.undo_pick(turn.player.id, button.task_id))


@router.button(callbacks.SubmitRanking)
def ranking_submitted(turn: Turn, button: callbacks.SubmitRanking) -> None:
    task = turn.game.assignment.current_task(turn.player.id)
    outcome = turn.game.retrieval.submit_drafted_ranking(turn.player.id, button.task_id)
    screen = task if isinstance(task, RetrievalTaskView) and task.task_id == button.task_id else None
    if outcome.hit_rank:
        text = turn.t("hit", rank=outcome.hit_rank, points=outcome.points)
        if screen:
            finish(turn, screen, text)
    else:
        # The grid becomes the sticker that was meant: the answer, on the finished screen.
        text = turn.t("miss")
        if screen:
            finish(turn, screen, text, photo=[outcome.target])
    if screen is None:
        turn.say(SendText(text))
    next_screen(turn)


@router.button(callbacks.SkipTask)
def task_skipped(turn: Turn, button: callbacks.SkipTask) -> None:
    task = turn.game.assignment.current_task(turn.player.id)
    turn.game.retrieval.skip_task(turn.player.id, button.task_id)
    if isinstance(task, RetrievalTaskView) and task.task_id == button.task_id:
        finish(turn, task, turn.t("round_skipped", round=turn.game.standings.tasks_finished(turn.player.id) + 1))
    next_screen(turn)


@router.button(callbacks.SuggestQuery)
def suggestion_asked(turn: Turn, button: callbacks.SuggestQuery) -> None:
    current = turn.game.assignment.current_task(turn.player.id)
    if not isinstance(current, RetrievalTaskView) or current.task_id != button.task_id:
        raise GameError(ErrorCode.TASK_CLOSED)
    turn.game.awaited.expect(turn.player.id, AwaitedInput.SUGGEST, button.task_id)
    turn.say(SendText(turn.t("suggest_prompt")))


@router.awaiting(AwaitedInput.SUGGEST)
def suggestion_written(turn: Turn, task_id: int) -> None:
    match = SUGGESTION.match(turn.incoming.text or "")
    current = turn.game.assignment.current_task(turn.player.id)
    size = len(current.candidates) if isinstance(current, RetrievalTaskView) else turn.game.settings.rules.candidates
    if not match or not 1 <= int(match.group(1)) <= size:
        turn.game.awaited.expect(turn.player.id, AwaitedInput.SUGGEST, task_id)  # the prompt stands: try again
        turn.say(SendText(turn.t("suggest_bad", n=size)))
        return
    sticker_id = current.candidates[int(match.group(1)) - 1].id if isinstance(current, RetrievalTaskView) else -1
    query = turn.game.retrieval.suggest_query(turn.player.id, task_id, sticker_id, match.group(2))
    turn.say(SendText(turn.t("suggest_thanks", query=query.text)))
