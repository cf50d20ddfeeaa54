"""The labeler's screen: one text (progress, the chat, the question, the taboo, the queries so far
with their previews, the buttons) and one photo (the sticker, then the latest preview grid), both
edited in place as the round goes on; when the round ends, the text becomes its outcome."""

from __future__ import annotations

from bots import callbacks
from bots.messages.catalogue import Catalogue, quoted
from bots.messages.limits import TEXT_LIMIT, Buttons, shorten, utf16_units
from bots.messages.replies import LivePhoto, LiveText, Reply
from bots.screens.task import Progress, header, screen_key
from core.views import LabelTaskView, PreviewView, QueryView
from core.vocabulary import TABOO_SHOWN, Verdict


def screen(task: LabelTaskView, progress: Progress, t: Catalogue, *, notice: str | None = None, fresh: bool = False,
           warning: str | None = None, latest: PreviewView | None = None, photo: bool = True) -> list[Reply]:
    """The screen's text, and its photo unless `photo` is False (the photo stays as it is). `latest`:
    the preview of the query just added; `warning`: a refused query, said on the screen; `notice`:
    the held notices that head it; `fresh` moves the screen to the bottom of the chat."""
    previews = {p.query.id: p for p in task.previews}
    if latest is not None:
        previews[latest.query.id] = latest
    head = f"{notice}\n\n" if notice else ""
    head += header(progress, t) + "\n"
    after = f"\n\n{t('label_prompt')}"
    if task.taken:
        after += "\n" + t("label_taken", queries=quoted(task.taken[:TABOO_SHOWN], t.language))
    lines = []
    for query in task.queries:
        preview = previews.get(query.id)
        lines.append(t("label_preview", query=query.text, result=preview_result(task, preview, t))
                     if preview else f"• “{query.text}”")
    if lines:
        after += "\n\n" + t("label_queries", queries="").rstrip() + "\n" + "\n".join(lines)
    if warning:
        after += "\n\n" + warning
    # A long context is cut at its start (the messages nearest the sticker matter most), so the
    # question and the queries always show.
    context = "\n".join(f"{m.sender}: {m.text}" for m in task.context if m.text) or "…"
    frame = utf16_units(head + t("label_context", context="") + after)
    context = shorten(context, max(200, TEXT_LIMIT - frame - context.count("\n") * 2 - 2), keep="end")
    text = head + t("label_context", context=_blockquote(context)) + after
    key = screen_key(task)
    replies: list[Reply] = [LiveText(key, text, buttons(task.round_id, task.queries, t), fresh=fresh,
                                     moved=t("screen_moved"))]
    if not photo and not fresh:
        return replies
    shown = latest or (previews.get(task.queries[-1].id) if task.queries else None)
    if shown is not None and shown.hits:
        position = shown.target_position or position_of(task, shown)
        caption = t("preview_caption", query=shown.query.text, result=preview_result(task, shown, t))
        replies.append(LivePhoto(key, list(shown.hits), caption, highlight=position, fresh=fresh,
                                 moved=t("screen_moved")))
    elif shown is not None:
        caption = t("preview_caption", query=shown.query.text, result=preview_result(task, shown, t))
        replies.append(LivePhoto(key, [task.sticker], caption, fresh=fresh, moved=t("screen_moved")))
    else:
        replies.append(LivePhoto(key, [task.sticker], "", fresh=fresh, moved=t("screen_moved")))
    return replies


def warning(t: Catalogue, query: str, text: str) -> str:
    """A refused query and why, as the screen shows it."""
    return t("screen_warning", query=shorten(" ".join(query.split()), 64), text=text)


def finished(task: LabelTaskView, outcome: str) -> LiveText:
    """The round's outcome written onto its screen, the buttons gone."""
    return LiveText(screen_key(task), outcome, None, final=True)


def submitted(task: LabelTaskView, count: int, rounds: int, t: Catalogue) -> LiveText:
    return finished(task, t("round_submitted", count=count, queries=quoted([q.text for q in task.queries], t.language),
                            round=rounds))


def preview_result(task: LabelTaskView, preview: PreviewView, t: Catalogue) -> str:
    """Where the sticker stands for one query, honestly: a miss is never shown as a success."""
    if preview.verdict == Verdict.FUNCTION_WORDS:
        return t("preview_function_words")
    if preview.verdict == Verdict.NOT_FOUND or not preview.target_rank:
        return t("preview_not_found")
    position = preview.target_position or position_of(task, preview)
    if preview.total:
        if position:
            return t("preview_tile", rank=preview.target_rank, total=preview.total, tile=position)
        return t("preview_off_grid", rank=preview.target_rank, total=preview.total)
    if position:
        return t("preview_tile_short", rank=preview.target_rank, tile=position)
    return t("preview_off_grid_short", rank=preview.target_rank)


def buttons(round_id: int, queries: list[QueryView], t: Catalogue) -> Buttons:
    rows: Buttons = [[(t("button_remove", query=shorten(query.text, 24)),
                       callbacks.RemoveQuery(round_id, query.id).encode())] for query in queries]
    last = [(t("button_skip"), callbacks.SkipRound(round_id).encode())]
    if queries:
        last.insert(0, (t("button_submit"), callbacks.SubmitRound(round_id).encode()))
    return rows + [last]


def position_of(task: LabelTaskView, preview: PreviewView) -> int | None:
    """The 1-based tile of the labeled sticker in a preview grid, if it is there."""
    return next((n for n, hit in enumerate(preview.hits, start=1) if hit.id == task.sticker.id), None)


def _blockquote(text: str) -> str:
    return "\n".join(f"│ {line}" for line in text.splitlines())
