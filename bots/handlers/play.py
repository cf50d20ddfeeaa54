"""Playing: /play and the Next button show the player's task, /stop pauses; and the task flow the
other features share: the next screen (held notices at its head), a task's screen shown, edited or
finished, the open task given back."""

from __future__ import annotations

from bots import callbacks
from bots.messages.replies import SendText
from bots.notices import fold_notices
from bots.router import Router, Turn
from bots.screens import label, retrieval
from bots.screens.task import Progress, headed, no_task
from core.game import GameError
from core.views import LabelTaskView, PreviewView, RetrievalTaskView, StickerView

router = Router()


@router.command("play")
def play(turn: Turn) -> None:
    next_screen(turn, fresh=True)


@router.button(callbacks.NextTask)
def next_task(turn: Turn, button: callbacks.NextTask) -> None:
    next_screen(turn, fresh=True)


@router.command("stop")
def stop(turn: Turn) -> None:
    released = release_open_task(turn)
    notice = fold_notices(turn.game, turn.player.id, turn.t, turn.out)
    turn.say(SendText(headed(notice, turn.t("stopped_released" if released else "stopped_nothing"))))


# ---------------------------------------------------------------------- the task flow
def next_screen(turn: Turn, fresh: bool = False) -> None:
    """The player's task screen: a new task's gets new messages; the open task's (the player asked
    for it again) is moved down when `fresh`. Notices held during the last task head it."""
    task = turn.game.assignment.next_task(turn.player.id)
    notice = fold_notices(turn.game, turn.player.id, turn.t, turn.out)
    if task is None:
        turn.say(no_task(turn.t, notice))
    elif isinstance(task, LabelTaskView):
        show_label(turn, task, notice=notice, fresh=fresh)
    else:
        turn.say(retrieval.screen(task, progress(turn), turn.t, notice=notice, fresh=fresh))


def progress(turn: Turn) -> Progress:
    standings = turn.game.standings
    return Progress.of(standings.player_stats(turn.player.id), standings.tasks_finished(turn.player.id))


def show_label(turn: Turn, task: LabelTaskView, *, notice: str | None = None, fresh: bool = False,
               warning: str | None = None, latest: PreviewView | None = None, photo: bool = True) -> None:
    turn.say(*label.screen(task, progress(turn), turn.t, notice=notice, fresh=fresh, warning=warning, latest=latest,
                           photo=photo))


def finish(turn: Turn, task: LabelTaskView | RetrievalTaskView, outcome: str,
           photo: list[StickerView] | None = None) -> None:
    """The outcome written onto a task's screen, its buttons gone. `photo`: an image to show instead."""
    turn.say(label.finished(task, outcome) if isinstance(task, LabelTaskView)
             else retrieval.finished(task, outcome, photo))


def release_open_task(turn: Turn) -> bool:
    """Give the player's open task back to the pool and say so on its screen; True if there was one."""
    current = turn.game.assignment.current_task(turn.player.id)
    turn.game.players.pause(turn.player.id)
    if current is None:
        return False
    finish(turn, current, turn.t("task_released"))
    return True


def current_screen(turn: Turn) -> None:
    """After a stale button (a finished task, a screen from before a restart): the player's current
    screen, moved to the bottom of the chat, so that no button is a dead end."""
    if not turn.reread().onboarded:
        return
    try:
        next_screen(turn, fresh=True)
    except GameError:
        pass  # nothing to show (banned, no task): the answer to the button says enough


def warn_on_screen(turn: Turn, warning: str, query: str) -> bool:
    """A refused query is said on the labeler's live screen rather than in a new message."""
    try:
        current = turn.game.assignment.current_task(turn.player.id)
    except GameError:
        return False
    if not isinstance(current, LabelTaskView):
        return False
    show_label(turn, current, warning=label.warning(turn.t, query, warning), photo=False)
    return True
