"""Prizes (moderators only): /prizes lists the prizes to hand out; "delivered" marks one and shows
the list again in the same message."""

from __future__ import annotations

from bots import callbacks
from bots.messages.replies import AnswerCallback
from bots.router import Router, Turn
from bots.screens import prizes

router = Router()


@router.command("prizes", onboarded=False, moderator=True)
def prize_list(turn: Turn, edit: int | None = None) -> None:
    turn.say(prizes.screen(turn.game.prizes.pending(turn.player.id, limit=prizes.SHOWN), turn.t, edit))


@router.button(callbacks.PrizeDelivered, onboarded=False, moderator=True)
def delivered(turn: Turn, button: callbacks.PrizeDelivered) -> None:
    turn.game.prizes.mark_delivered(turn.player.id, button.prize_id)
    turn.say(AnswerCallback(turn.t("prize_marked", id=button.prize_id)))
    prize_list(turn, edit=turn.incoming.message_id)
