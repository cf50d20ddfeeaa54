"""What every task screen shares: its key in the live-screen table, the progress line that heads it,
the room kept there for held notices, and the screen shown when there is no task."""

from __future__ import annotations

from dataclasses import dataclass

from bots import callbacks
from bots.messages.catalogue import Catalogue
from bots.messages.replies import SendText
from core.views import LabelTaskView, PlayerStats, RetrievalTaskView

# Room kept free at the head of a task's first message for the notices held during the last task.
NOTICE_ROOM = 300


@dataclass(frozen=True)
class Progress:
    """The progress line's numbers: the round the player is in, their streak and their points."""

    round: int
    streak: int
    points: int

    @classmethod
    def of(cls, stats: PlayerStats, tasks_finished: int) -> Progress:
        return cls(tasks_finished + 1, stats.streak, stats.points)


def header(progress: Progress, t: Catalogue) -> str:
    """"Round 4 · 🔥 2 in a row · 37 pts"."""
    parts = [t("screen_round", round=progress.round)]
    if progress.streak >= 2:
        parts.append(t("screen_streak", count=progress.streak))
    parts.append(t("screen_points", count=progress.points))
    return " · ".join(parts)


def screen_key(task: LabelTaskView | RetrievalTaskView) -> str:
    """The live screen a task is shown on ("label:<round>", "retrieval:<task>")."""
    return f"label:{task.round_id}" if isinstance(task, LabelTaskView) else f"retrieval:{task.task_id}"


def headed(notice: str | None, text: str) -> str:
    """`text` under the held notices, if any."""
    return f"{notice}\n\n{text}" if notice else text


def next_button(t: Catalogue) -> list[list[tuple[str, str]]]:
    return [[(t("next"), callbacks.NextTask().encode())]]


def no_task(t: Catalogue, notice: str | None) -> SendText:
    return SendText(headed(notice, t("no_task")), next_button(t))


def no_open_round(t: Catalogue) -> SendText:
    return SendText(t("no_open_round"), next_button(t))
