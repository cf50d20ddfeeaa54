"""The retriever's screen: one photo, the numbered grid of candidates, whose caption holds the
progress, the queries and the ranking so far, and whose buttons pick, undo, submit, skip and
suggest. Picks edit the caption and buttons in place; when the task ends, the caption becomes its
outcome (and the grid, after a miss, the sticker that was meant)."""

from __future__ import annotations

from bots import callbacks
from bots.messages.catalogue import Catalogue, quoted
from bots.messages.limits import CAPTION_LIMIT, Buttons, shorten, utf16_units
from bots.messages.replies import LivePhoto
from bots.screens.task import NOTICE_ROOM, Progress, header, screen_key
from core.views import RetrievalTaskView, StickerView

GRID_COLUMNS = 3


def screen(task: RetrievalTaskView, progress: Progress, t: Catalogue, *, notice: str | None = None,
           fresh: bool = False) -> LivePhoto:
    """The whole screen, the grid image included; `fresh` moves it to the bottom of the chat."""
    return LivePhoto(screen_key(task), list(task.candidates), caption(task, t, head(progress, t, notice)),
                     buttons(task, t), fresh=fresh, moved=t("screen_moved"))


def edited(task: RetrievalTaskView, progress: Progress, t: Catalogue, pressed: int | None) -> LivePhoto:
    """A pick changed: the caption and numbers, edited in place (the image stays). `pressed`: the
    message the button was on."""
    return LivePhoto(screen_key(task), None, caption(task, t, head(progress, t, None)), buttons(task, t),
                     on_message=pressed)


def finished(task: RetrievalTaskView, outcome: str, photo: list[StickerView] | None = None) -> LivePhoto:
    """The outcome written onto the screen, its buttons gone. `photo`: an image to show instead of the grid."""
    queries = shorten("🔎 " + quoted(task.queries, task.language), CAPTION_LIMIT // 2)
    return LivePhoto(screen_key(task), photo, f"{outcome}\n{queries}", None, final=True)


def head(progress: Progress, t: Catalogue, notice: str | None) -> str:
    text = f"{notice}\n\n" if notice else ""
    return shorten(text + header(progress, t) + "\n", NOTICE_ROOM)


def caption(task: RetrievalTaskView, t: Catalogue, head: str = "") -> str:
    """The queries share what the caption leaves: the ranking line below them always shows."""
    positions = {c.id: n for n, c in enumerate(task.candidates, start=1)}
    ranking = (t("ranking", ranking="  ".join(f"#{r}→{positions[p]}" for r, p in enumerate(task.picks, 1)))
               if task.picks else t("ranking_empty"))
    room = (CAPTION_LIMIT - max(NOTICE_ROOM, utf16_units(head))
            - utf16_units(t("retrieve_prompt", queries="") + "\n" + ranking))
    each = max(16, room // max(1, len(task.queries)) - 4)
    queries = shorten(quoted([shorten(q, each) for q in task.queries], t.language), max(16, room))
    return f"{head}{t('retrieve_prompt', queries=queries)}\n{ranking}"


def buttons(task: RetrievalTaskView, t: Catalogue) -> Buttons:
    rank_of = {p: r for r, p in enumerate(task.picks, start=1)}
    numbers = []
    for n, candidate in enumerate(task.candidates, start=1):
        label = f"{n} · #{rank_of[candidate.id]}" if candidate.id in rank_of else str(n)
        numbers.append((label, callbacks.TogglePick(task.task_id, n).encode()))
    rows = [numbers[i:i + GRID_COLUMNS] for i in range(0, len(numbers), GRID_COLUMNS)]
    rows.append([(t("button_done"), callbacks.SubmitRanking(task.task_id).encode()),
                 (t("button_undo"), callbacks.UndoPick(task.task_id).encode())])
    rows.append([(t("button_skip"), callbacks.SkipTask(task.task_id).encode()),
                 (t("button_suggest"), callbacks.SuggestQuery(task.task_id).encode())])
    return rows


def reminder(task: RetrievalTaskView, t: Catalogue) -> str:
    """What a retriever's text is answered with: the task they are in."""
    return t("retrieve_prompt", queries=quoted(task.queries, t.language))
