"""/help and an unknown command (the rules), and what the game cannot take as a move: an edited
message, a sticker or anything else without text, and text it cannot read."""

from __future__ import annotations

from bots.messages.incoming import IncomingKind
from bots.messages.replies import SendText
from bots.router import Router, Turn
from bots.screens import help

router = Router()


@router.command("help", onboarded=False)
def rules(turn: Turn) -> None:
    turn.say(SendText(help.text(turn.game.settings, turn.t)))


@router.unknown_command()
def unknown(turn: Turn) -> None:
    rules(turn)


@router.message(IncomingKind.EDITED, onboarded=False)
def edited(turn: Turn) -> None:
    turn.say(SendText(turn.t("edited")))


@router.message(IncomingKind.UNREADABLE, onboarded=False)
def unreadable(turn: Turn) -> None:
    turn.say(SendText(turn.t.error("invalid_chars")))


@router.message(IncomingKind.STICKER, IncomingKind.OTHER, onboarded=False)
def unsupported(turn: Turn) -> None:
    turn.say(SendText(turn.t("unsupported")))
