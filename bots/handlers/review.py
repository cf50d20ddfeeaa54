"""Review (moderators only): /review and its queue of rounds a retriever missed, one screen per
round; Accept, Correct (the correction is the next text, an awaited input) and Discard per query,
skipping a round and paging. Every decision is re-checked by the engine (who may decide, whether
the item is still open)."""

from __future__ import annotations

from bots import callbacks
from bots.handlers import contexts
from bots.messages.replies import AnswerCallback, SendText
from bots.router import Router, Turn
from bots.screens import review
from core.game import GameError
from core.vocabulary import AwaitedInput, ErrorCode

router = Router()


@router.command("review", onboarded=False, moderator=True)
def review_command(turn: Turn) -> None:
    """/review, /review en, /review zh, /review stats, /review contexts [en|zh]."""
    args = turn.incoming.args
    first, _, rest = args.strip().partition(" ")
    if first.lower() == "contexts":
        contexts.show(turn, rest)  # bots/handlers/contexts.py
        return
    if args.strip() == "stats":
        turn.say(review.stats(turn.game.moderation.review_counts(turn.player.id), turn.t))
        return
    scope = review.scope_of(args)
    if scope is None:
        turn.say(SendText(turn.t("review_usage")))
        return
    _send_screen(turn, scope, index=0)


@router.button(callbacks.ReviewPage, onboarded=False, moderator=True)
def page(turn: Turn, button: callbacks.ReviewPage) -> None:
    turn.say(AnswerCallback())
    _send_screen(turn, button.scope, index=button.position - 1)


@router.button(callbacks.ReviewSkip, onboarded=False, moderator=True)
def round_skipped(turn: Turn, button: callbacks.ReviewSkip) -> None:
    moderation, message_id = turn.game.moderation, turn.incoming.message_id
    moderation.skip_review_round(turn.player.id, button.round_id)
    turn.say(AnswerCallback(turn.t("review_skipped")))
    skipped = moderation.review_round(turn.player.id, None, round_id=button.round_id)
    if skipped is not None and message_id is not None:  # the skipped screen keeps its text, not its buttons
        turn.say(review.edited(skipped, turn.t, button.scope, message_id, note=turn.t("review_skipped"), live=False))
    _send_screen(turn, button.scope, index=0)


@router.button(callbacks.ReviewCorrect, onboarded=False, moderator=True)
def correction_asked(turn: Turn, button: callbacks.ReviewCorrect) -> None:
    item = _open_round_of(turn, button.query_id, button.scope)
    query = next(q for q in item.queries if q.id == button.query_id)
    turn.game.awaited.expect(turn.player.id, AwaitedInput.CORRECT, button.query_id)
    turn.say(AnswerCallback())
    prompt = turn.t("review_correct_prompt", query=query.text)
    # The screen stops offering buttons until the correction arrives; then a fresh one follows.
    message_id = turn.incoming.message_id
    turn.say(review.edited(item, turn.t, button.scope, message_id, note=prompt, live=False) if message_id
             else SendText(prompt))


@router.button(callbacks.ReviewAccept, callbacks.ReviewDiscard, onboarded=False, moderator=True)
def decided(turn: Turn, button: callbacks.ReviewAccept | callbacks.ReviewDiscard) -> None:
    item = _open_round_of(turn, button.query_id, button.scope)
    moderation = turn.game.moderation
    decide = moderation.accept_query if isinstance(button, callbacks.ReviewAccept) else moderation.discard_query
    decision = decide(turn.player.id, button.query_id)
    turn.say(AnswerCallback(turn.t(f"review_done_{decision.status}")))
    _after_decision(turn, button.scope, item.round_id)


@router.awaiting(AwaitedInput.CORRECT, onboarded=False, moderator=True)
def corrected(turn: Turn, query_id: int) -> None:
    """The moderator's text after Correct: saved, and the round's screen shown again with it."""
    round_id = _round_of(turn, query_id)
    try:
        decision = turn.game.moderation.correct_query(turn.player.id, query_id, turn.incoming.text)
    except GameError as error:
        if error.code != ErrorCode.ALREADY_REVIEWED:  # a text that cannot be a query: the prompt stands
            turn.game.awaited.expect(turn.player.id, AwaitedInput.CORRECT, query_id)
        raise
    note = turn.t("review_done_corrected_text", query=decision.text)
    item = turn.game.moderation.review_round(turn.player.id, None, round_id=round_id)
    if item is not None and item.open:
        turn.say(review.screen(item, turn.t, "all", note=note))
        return
    turn.say(SendText(f"{note}\n{turn.t('review_round_done')}"))
    _send_screen(turn, "all", index=0)


def _send_screen(turn: Turn, scope: str, index: int = 0) -> None:
    """The round at `index` of the queue, as a new screen."""
    item = turn.game.moderation.review_round(turn.player.id, review.language_of(scope), index=index)
    turn.say(review.screen(item, turn.t, scope) if item is not None else SendText(turn.t("review_empty")))


def _round_of(turn: Turn, query_id: int) -> int:
    round_id = turn.game.moderation.review_round_of(turn.player.id, query_id)
    if round_id is None:
        raise GameError(ErrorCode.ALREADY_REVIEWED)
    return round_id


def _open_round_of(turn: Turn, query_id: int, scope: str):
    """The round of a query still waiting for a decision; ALREADY_REVIEWED when it is not."""
    item = turn.game.moderation.review_round(turn.player.id, review.language_of(scope),
                                             round_id=_round_of(turn, query_id))
    if item is None or not any(q.id == query_id and q.status == "needs_review" for q in item.queries):
        raise GameError(ErrorCode.ALREADY_REVIEWED)
    return item


def _after_decision(turn: Turn, scope: str, round_id: int) -> None:
    """The round's screen shows the decision; once the round is done its buttons go and the next
    round follows as a new screen."""
    message_id = turn.incoming.message_id
    item = turn.game.moderation.review_round(turn.player.id, review.language_of(scope), round_id=round_id)
    if item is not None and item.open:
        turn.say(review.edited(item, turn.t, scope, message_id) if message_id is not None
                 else review.screen(item, turn.t, scope))
        return
    if item is not None and message_id is not None:
        turn.say(review.edited(item, turn.t, scope, message_id, note=turn.t("review_round_done"), live=False))
    _send_screen(turn, scope, index=0)
