"""The moderators' review of imported chat contexts (`/review contexts`): one message per context,
its messages as the labelers would see them, with Approve / Reject and paging. A decision edits the
message in place, which then shows the next waiting context."""

from __future__ import annotations

from bots import callbacks
from bots.messages.catalogue import Catalogue
from bots.messages.limits import TEXT_LIMIT, Buttons, shorten, utf16_units
from bots.messages.replies import EditText, SendText
from storage.models import ChatContext


def lines(context: ChatContext) -> str:
    """The context's messages, "A: …" per line, as the label screen shows them."""
    shown = [f"{m.get('sender', '?')}: {m.get('text', '')}" for m in context.messages
             if isinstance(m, dict) and m.get("text")]
    return "\n".join(shown) or "…"


def text(context: ChatContext, position: int, waiting: int, t: Catalogue, note: str = "") -> str:
    head = t("contexts_screen", position=position, waiting=waiting, language=t.language_name(context.language),
             source=f"{context.conversation} #{context.message_id}", words=context.word_count)
    top = f"{note}\n\n{head}" if note else head
    # The messages nearest the sticker matter most: a long context is cut at its start.
    room = TEXT_LIMIT - utf16_units(top) - 4
    return f"{top}\n\n{shorten(lines(context), max(200, room), keep='end')}"


def buttons(context: ChatContext, position: int, waiting: int, t: Catalogue, scope: str) -> Buttons:
    decide = [(t("button_context_approve"), callbacks.ContextDecision(context.id, "approve", scope).encode()),
              (t("button_context_reject"), callbacks.ContextDecision(context.id, "reject", scope).encode())]
    paging = []
    if position > 1:
        paging.append(("◀", callbacks.ContextPage(position - 1, scope).encode()))
    if position < waiting:
        paging.append(("▶", callbacks.ContextPage(position + 1, scope).encode()))
    return [decide, paging] if paging else [decide]


def screen(context: ChatContext | None, position: int, waiting: int, t: Catalogue, scope: str, *,
           edit: int | None = None, note: str = "") -> SendText | EditText:
    """The context at `position` of `waiting`, or the empty queue; `edit`: the message to replace."""
    if context is None:
        body, keys = (f"{note}\n\n{t('contexts_empty')}" if note else t("contexts_empty")), None
    else:
        body, keys = text(context, position, waiting, t, note), buttons(context, position, waiting, t, scope)
    return EditText(edit, body, keys) if edit is not None else SendText(body, keys)
