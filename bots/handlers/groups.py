"""Group chats: `/round` posts a round that the members race on, the number buttons are their
picks, `/top` shows the group's own table; the bot being added, removed or muted and the group
becoming a supergroup are recorded. Everything here works with privacy mode on: only commands and
button presses reach the bot. Nothing is posted in a group unasked beyond a round's own message,
and /top and the pointer at an open round keep the group's pace (`game.group_rounds.may_post`).

A member who has not started the bot privately and consented is answered by a callback alert whose
link opens a private chat with the bot (`/start g<chat>`): they join there, never in the group."""

from __future__ import annotations

from bots import callbacks
from bots.messages.catalogue import catalogue
from bots.messages.incoming import IncomingKind
from bots.messages.replies import AnswerCallback, GroupRoundScreen
from bots.router import Router, Turn
from bots.screens import group_round
from core.game import GameError
from core.vocabulary import LANGUAGES, ErrorCode

router = Router()

# Refusals that a member fixes by joining the game privately.
_JOIN_FIRST = (ErrorCode.NO_CONSENT, ErrorCode.UNKNOWN_PLAYER, ErrorCode.NO_LANGUAGE)


def join_payload(chat_id: int) -> str:
    """The deep link's payload (t.me/<bot>?start=g<chat>): A-Za-z0-9_- only, at most 64 characters."""
    return f"g{chat_id}"


def _fallback(turn: Turn) -> str:
    return turn.player.language or turn.t.language


def _in_group(turn: Turn) -> bool:
    """A group's button pressed in a private chat (forged data) is stale there."""
    if not turn.incoming.in_group:
        raise GameError(ErrorCode.STALE)
    return True


@router.group_command("round")
def round_asked(turn: Turn) -> None:
    word = turn.incoming.args.strip().split(" ")[0].lower() or None
    language = word if word in LANGUAGES else None
    chat = turn.incoming.chat_id
    rounds = turn.game.group_rounds
    posted = rounds.post(chat, turn.bot_key or "", turn.player.id or None, language, _fallback(turn))
    if posted is None:
        if rounds.may_post(chat, turn.bot_key or ""):
            turn.say(group_round.no_round(catalogue(language or rounds.language_of(chat) or _fallback(turn))))
    elif posted.new:
        turn.say(GroupRoundScreen(posted.round.round_id))
    elif rounds.may_post(chat, turn.bot_key or ""):
        turn.say(group_round.round_open(catalogue(posted.round.language), chat, posted.round.message_id))


@router.group_command("top")
def top_asked(turn: Turn) -> None:
    rounds, chat = turn.game.group_rounds, turn.incoming.chat_id
    if rounds.may_post(chat, turn.bot_key or ""):
        board = rounds.table(chat, _fallback(turn))
        turn.say(group_round.table(board, catalogue(board.language)))


@router.group_command("start", "help")
def hello_asked(turn: Turn) -> None:
    rounds, chat = turn.game.group_rounds, turn.incoming.chat_id
    if rounds.may_post(chat, turn.bot_key or ""):
        turn.say(group_round.hello(catalogue(rounds.language_of(chat) or _fallback(turn))))


@router.unknown_group_command()
def other_command(turn: Turn) -> None:
    """Private commands (/play, /me …) and other bots' commands: silence, not a flood."""


@router.button(callbacks.GroupPickButton, onboarded=False)
def picked(turn: Turn, button: callbacks.GroupPickButton) -> None:
    _in_group(turn)
    chat = turn.incoming.chat_id
    try:
        view = turn.game.group_rounds.pick(chat, button.round_id, turn.player.id, button.position)
    except GameError as error:
        if error.code in _JOIN_FIRST:
            turn.say(AnswerCallback(turn.t("group_join_first"), alert=True, start=join_payload(chat)))
            return
        raise
    turn.say(AnswerCallback(turn.t("group_pick_locked", n=button.position)))
    if view.is_open:  # a pick that closed the round leaves its result to the close's notice (one edit)
        turn.say(GroupRoundScreen(view.round_id, turn.incoming.message_id))


@router.button(callbacks.GroupJoin, onboarded=False)
def join_asked(turn: Turn, button: callbacks.GroupJoin) -> None:
    _in_group(turn)
    if turn.player.onboarded:
        turn.say(AnswerCallback(turn.t("group_already_in"), alert=True))
    else:
        turn.say(AnswerCallback(turn.t("group_join_first"), alert=True, start=join_payload(turn.incoming.chat_id)))


@router.message(IncomingKind.GROUP_MEMBER, onboarded=False)
def membership_changed(turn: Turn) -> None:
    rounds, chat, status = turn.game.group_rounds, turn.incoming.chat_id, turn.incoming.member_status
    if status in ("member", "administrator", "restricted"):
        rounds.joined(chat, turn.bot_key or "")
        if rounds.may_post(chat, turn.bot_key or ""):
            turn.say(group_round.hello(catalogue(rounds.language_of(chat) or _fallback(turn))))
    else:  # left, kicked, muted: nothing is sent there any more
        rounds.left(chat, turn.bot_key or "", muted=status == "muted")


@router.message(IncomingKind.GROUP_MIGRATED, onboarded=False)
def group_migrated(turn: Turn) -> None:
    if turn.incoming.migrated_to is not None:
        turn.game.group_rounds.migrated(turn.incoming.chat_id, turn.incoming.migrated_to, turn.bot_key or "")
