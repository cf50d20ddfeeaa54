"""Imported chat contexts (moderators only): `/review contexts` (or `/review contexts en|zh`) shows
the contexts waiting for a decision, one screen each, with Approve / Reject and paging. Only an
approved context is ever shown to labelers. Each decision is re-checked by the engine (who may
decide, whether the context still waits)."""

from __future__ import annotations

from bots import callbacks
from bots.messages.replies import AnswerCallback
from bots.router import Router, Turn
from bots.screens import contexts, review
from core.game import GameError
from core.vocabulary import ErrorCode

router = Router()

# The waiting contexts a screen pages through (a moderator decides them one by one, oldest first).
PAGED = 1000


def show(turn: Turn, args: str) -> None:
    """`/review contexts [en|zh]`: the oldest waiting context (a new message)."""
    scope = review.scope_of(args)
    if scope is None:
        scope = "all"
    _screen(turn, scope, position=1)


@router.button(callbacks.ContextPage, onboarded=False, moderator=True)
def page(turn: Turn, button: callbacks.ContextPage) -> None:
    turn.say(AnswerCallback())
    _screen(turn, button.scope, position=button.position, edit=turn.incoming.message_id)


@router.button(callbacks.ContextDecision, onboarded=False, moderator=True)
def decided(turn: Turn, button: callbacks.ContextDecision) -> None:
    approve = button.decision == "approve"
    try:
        turn.game.moderation.review_context(turn.player.id, button.context_id, approve)
    except GameError as error:
        if error.code != ErrorCode.ALREADY_REVIEWED:
            raise
        note = turn.t("contexts_already_decided")  # another moderator (or a double tap) was first
    else:
        note = turn.t("contexts_approved" if approve else "contexts_rejected", id=button.context_id)
    turn.say(AnswerCallback(note))
    _screen(turn, button.scope, position=1, edit=turn.incoming.message_id, note=note)


def _screen(turn: Turn, scope: str, position: int, *, edit: int | None = None, note: str = "") -> None:
    waiting = turn.game.moderation.pending_contexts(turn.player.id, review.language_of(scope), PAGED)
    position = min(max(position, 1), max(len(waiting), 1))
    current = waiting[position - 1] if waiting else None
    turn.say(contexts.screen(current, position, len(waiting), turn.t, scope, edit=edit, note=note))
