"""The moderators' review screen: one screen per labeler round, a grid photo (tile 1 the sticker,
tiles 2–4 the retriever's picks) whose caption holds the chat context and the round's queries, with
Accept / Correct / Discard buttons per open query and paging below. Decisions edit that screen in
place; a finished round's screen keeps its decisions and loses its buttons."""

from __future__ import annotations

from bots import callbacks
from bots.messages.catalogue import Catalogue
from bots.messages.limits import CAPTION_LIMIT, Buttons, shorten, utf16_units
from bots.messages.replies import EditText, SendGrid, SendText
from core.views import ReviewRound
from storage.models import QueryStatus

MARKS = {QueryStatus.NEEDS_REVIEW: "❔", QueryStatus.ACCEPTED: "✅", QueryStatus.CORRECTED: "✏️",
         QueryStatus.DISCARDED: "✖", QueryStatus.VALIDATED: "🎯", QueryStatus.PENDING: "⏳"}
PICKS_SHOWN = 3


def scope_of(args: str) -> str | None:
    """The language filter of `/review en` ("all" without one; None: not a filter)."""
    word = args.strip().lower()
    return word if word in callbacks.SCOPES else "all" if not word else None


def language_of(scope: str) -> str | None:
    return None if scope == "all" else scope


def stats(counts: dict, t: Catalogue) -> SendText:
    return SendText(t("review_stats", **{str(k): v for k, v in counts.items()}))


def screen(item: ReviewRound, t: Catalogue, scope: str, note: str = "") -> SendGrid:
    """The round as a new screen: a round's grid is its own photo, so another round cannot be edited into it."""
    return SendGrid([item.sticker, *item.retriever_picks[:PICKS_SHOWN]], caption(item, t, note),
                    buttons(item, t, scope), highlight=1)


def edited(item: ReviewRound, t: Catalogue, scope: str, message_id: int, note: str = "", *,
           live: bool = True) -> EditText:
    """The round's screen edited in place; without buttons unless `live`."""
    return EditText(message_id, caption(item, t, note), buttons(item, t, scope) if live else None, caption=True)


def caption(item: ReviewRound, t: Catalogue, note: str = "") -> str:
    picks = len(item.retriever_picks[:PICKS_SHOWN])
    legend = t("review_legend", last=picks + 1) if picks > 1 else \
        t("review_legend_one") if picks == 1 else t("review_legend_none")
    author = item.author_pseudonym or "–"
    head = t("review_round", position=item.position, waiting=item.waiting, language=item.language, author=author) \
        if item.position else t("review_round_closed", language=item.language, author=author)
    lines = []
    for n, query in enumerate(item.queries, start=1):
        mark = MARKS.get(query.status, "•")
        if query.status == QueryStatus.CORRECTED and query.original != query.text:
            lines.append(t("review_line_corrected", n=n, mark=mark, query=query.text, original=query.original))
        else:
            lines.append(t("review_line", n=n, mark=mark, query=query.text))
    queries = "\n".join(lines)
    if note:
        queries += f"\n\n{note}"
    # The chat context gets whatever room the caption has left, cut at its start (the messages
    # nearest the sticker matter most).
    frame = "\n\n".join([head, legend, "{context}", queries])
    room = CAPTION_LIMIT - utf16_units(frame) - 8
    context = "\n".join(f"{m.sender}: {m.text}" for m in item.context if m.text) or "…"
    context = "\n".join(f"│ {line}" for line in shorten(context, max(40, room), keep="end").splitlines())
    return "\n\n".join([head, legend, context, queries])


def buttons(item: ReviewRound, t: Catalogue, scope: str) -> Buttons:
    rows: Buttons = []
    for n, query in enumerate(item.queries, start=1):
        if query.status != QueryStatus.NEEDS_REVIEW:
            continue
        rows.append([(t("button_accept_n", n=n), callbacks.ReviewAccept(query.id, scope).encode()),
                     (t("button_correct_n", n=n), callbacks.ReviewCorrect(query.id, scope).encode()),
                     (t("button_discard_n", n=n), callbacks.ReviewDiscard(query.id, scope).encode())])
    paging = []
    if item.position > 1:
        paging.append((t("button_prev"), callbacks.ReviewPage(item.position - 1, scope).encode()))
    if item.open:
        paging.append((t("button_skip_round"), callbacks.ReviewSkip(item.round_id, scope).encode()))
    if item.position < item.waiting:
        paging.append((t("button_next_round"), callbacks.ReviewPage(item.position + 1, scope).encode()))
    if paging:
        rows.append(paging)
    return rows
