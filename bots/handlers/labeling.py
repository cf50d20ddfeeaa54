"""Labeling: the labeler's text is a query for the sticker (its preview shown on the screen); the
round's buttons remove a query, submit the round or skip it."""

from __future__ import annotations

from bots import callbacks
from bots.handlers.play import finish, next_screen, show_label
from bots.messages.incoming import IncomingKind
from bots.messages.replies import SendText
from bots.router import Router, Turn
from bots.screens import label, retrieval
from bots.screens.task import no_open_round
from core.views import LabelTaskView, RetrievalTaskView

router = Router()


@router.message(IncomingKind.TEXT)
def query_written(turn: Turn) -> None:
    current = turn.game.assignment.current_task(turn.player.id)
    if isinstance(current, RetrievalTaskView):
        turn.say(SendText(retrieval.reminder(current, turn.t)))
        return
    if not isinstance(current, LabelTaskView):
        turn.say(no_open_round(turn.t))
        return
    preview = turn.game.labeling.add_query(turn.player.id, current.round_id, turn.incoming.text)
    show_label(turn, turn.game.labeling.label_task(turn.player.id, current.round_id), latest=preview)


@router.button(callbacks.SubmitRound)
def round_submitted(turn: Turn, button: callbacks.SubmitRound) -> None:
    labeling = turn.game.labeling
    task = labeling.label_task(turn.player.id, button.round_id)
    result = labeling.submit_round(turn.player.id, button.round_id)
    turn.say(label.submitted(task, result.query_count, turn.game.standings.tasks_finished(turn.player.id), turn.t))
    next_screen(turn)


@router.button(callbacks.SkipRound)
def round_skipped(turn: Turn, button: callbacks.SkipRound) -> None:
    task = turn.game.labeling.label_task(turn.player.id, button.round_id)
    turn.game.labeling.skip_round(turn.player.id, button.round_id)
    finish(turn, task, turn.t("round_skipped"))  # a skip is no round: the next screen keeps its number
    next_screen(turn)


@router.button(callbacks.RemoveQuery)
def query_removed(turn: Turn, button: callbacks.RemoveQuery) -> None:
    turn.game.labeling.remove_query(turn.player.id, button.round_id, button.query_id)
    show_label(turn, turn.game.labeling.label_task(turn.player.id, button.round_id))
