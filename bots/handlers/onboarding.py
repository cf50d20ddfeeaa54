"""Onboarding: a language, then consent, then the welcome and the first task; /start, /lang and
/forget, and what a player who has not finished onboarding is shown instead of what they asked for."""

from __future__ import annotations

from bots import callbacks
from bots.handlers.play import next_screen, release_open_task
from bots.messages.catalogue import catalogue
from bots.messages.replies import AnswerCallback, SendText
from bots.router import Router, Turn
from bots.screens import onboarding

router = Router()


@router.refusal("onboarded")
def onboard(turn: Turn, welcome: bool = True, edit: int | None = None) -> None:
    """Language, consent, then the welcome and the player's screen. A player who is already playing
    (/start again, "I agree" pressed again) gets their current screen moved down, never a second
    one. `edit`: the onboarding message whose button was pressed, which becomes the next step (the
    consent question, then the consent with the welcome under it)."""
    player, t = turn.player, turn.t
    if player.language is None:
        turn.say(onboarding.language_choice(t))
    elif not player.onboarded:
        turn.say(onboarding.consent(t, edit))
    else:
        if welcome:
            turn.say(onboarding.welcome(t, edit))
        elif edit is not None:
            turn.say(onboarding.language_set(t, edit))
        next_screen(turn, fresh=not welcome)


@router.command("start", onboarded=False)
def start(turn: Turn) -> None:
    if turn.incoming.args.startswith("g"):  # the Join link of a group round (bots/handlers/groups.py)
        turn.say(SendText(turn.t("group_join_welcome")))
    onboard(turn, welcome=False)


@router.command("lang", onboarded=False)
def choose_language(turn: Turn) -> None:
    if turn.player.onboarded:
        release_open_task(turn)  # a language is chosen between tasks
    turn.say(onboarding.language_choice(turn.t))


@router.button(callbacks.ChooseLanguage, onboarded=False)
def language_chosen(turn: Turn, button: callbacks.ChooseLanguage) -> None:
    if turn.player.onboarded:
        release_open_task(turn)  # a chooser from before the task began
    turn.game.players.set_language(turn.player.id, button.language)
    player = turn.reread()
    turn.t = catalogue(player.language)
    turn.say(AnswerCallback(turn.t("language_set")))
    onboard(turn, welcome=not player.onboarded, edit=turn.incoming.message_id)


@router.button(callbacks.GiveConsent, onboarded=False)
def consent_given(turn: Turn, button: callbacks.GiveConsent) -> None:
    again = turn.player.onboarded
    turn.game.players.give_consent(turn.player.id)
    turn.reread()
    onboard(turn, welcome=not again, edit=turn.incoming.message_id)


@router.command("forget")
def forget(turn: Turn) -> None:
    turn.say(onboarding.forget_question(turn.t))


@router.button(callbacks.ForgetAnswer, onboarded=False)
def forget_answered(turn: Turn, button: callbacks.ForgetAnswer) -> None:
    forgotten = button.answer == "yes"
    if forgotten:
        if turn.player.onboarded:
            release_open_task(turn)
        turn.game.players.withdraw_consent(turn.player.id)
    turn.say(onboarding.forget_answered(turn.t, forgotten, turn.incoming.message_id))
