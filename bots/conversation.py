"""The conversation layer's front door: a player's update in, the router's handler for it, replies
out. No Telegram types here, and no game rules either: the engine decides, the handlers
(bots/handlers/) only ask it and show its answers through the screens (bots/screens/).

Every button press is re-checked by the engine against the database (ownership, state), so a
forged, stale or repeated `callback_data` can only earn a polite answer.
"""

from __future__ import annotations

from bots import notices
from bots.handlers import ROUTER
from bots.handlers.play import current_screen, warn_on_screen
from bots.log_context import note_player
from bots.messages.catalogue import catalogue
from bots.messages.incoming import GUEST_KINDS, Incoming, IncomingKind
from bots.messages.replies import AnswerCallback, Expire, Outgoing, SendText
from bots.router import GuestTurn, PlayerState, Router, Turn
from core.game import Game, GameError
from core.vocabulary import LANGUAGES, ErrorCode, Language
from storage.db import UnitOfWork
from storage.models import OutboxMessage

# Errors that mean the button belongs to a screen that is gone: the answer comes with the current one.
_STALE = (ErrorCode.STALE, ErrorCode.TASK_CLOSED, ErrorCode.ROUND_CLOSED)


class Conversation:
    def __init__(self, game: Game, moderators: set[int] | frozenset[int] = frozenset(), router: Router = ROUTER):
        """`moderators`: the Telegram user ids the settings list (STICKTIONARY_MODERATORS); a listed
        person who writes is granted the moderator flag, and moderator notices go to them."""
        self.game = game
        self.moderators = set(moderators)
        self.router = router

    def render_outbox(self, message: OutboxMessage) -> list[Outgoing]:
        """Turn what the engine and the jobs wrote to the outbox into messages for whom they concern."""
        return notices.render_outbox(self.game, self.moderators, message)

    def holds(self, message: OutboxMessage) -> bool:
        """Whether a game notice waits for its player's next screen (bots/notices.py)."""
        return notices.holds(self.game, message)

    def handle(self, incoming: Incoming, unit: UnitOfWork, bot_key: str | None = None,
               bot_languages: tuple[str, ...] = LANGUAGES) -> Outgoing:
        """The player's update handled in `unit`, the transaction that also marks it handled
        (bots/inbox.py): every step the handlers ask of the game is a savepoint of it.
        `bot_key`: the bot the update came through; the player's outbox messages follow it.
        `bot_languages`: the languages that bot serves. Inline mode is served without a player row."""
        game = self.game.within(unit)
        if incoming.kind in GUEST_KINDS:
            out = Outgoing(incoming.chat_id)
            t = catalogue(language_hint(incoming.language_code))
            self.router.serve(GuestTurn(game, incoming, bot_key or "", tuple(bot_languages), t, out))
            return out
        if incoming.in_group:
            player = group_member(game, incoming)  # a group member is read, never registered
        else:
            row = game.players.register(incoming.user_id, incoming.display_name, bot_key=bot_key)
            note_player(row.id)
            moderator = game.moderators.allows(row)
            if incoming.user_id in self.moderators and not moderator:
                game.players.set_moderator(row.id)
                moderator = True
            player = PlayerState.of(row, moderator=moderator)
        t = catalogue(player.language or language_hint(incoming.language_code))
        # A reply in a group is the group's: a refusal there (the bot removed) says nothing of the player.
        out = Outgoing(incoming.chat_id, callback_id=incoming.callback_id,
                       player_id=None if incoming.in_group else player.id)
        turn = Turn(game, incoming, player, t, out, bot_key)
        try:
            self.router.dispatch(turn)
        except GameError as error:
            text = t.error(error.code, error.detail)
            if incoming.in_group:  # never a screen of the player's in the group, nor a message there
                if incoming.kind == IncomingKind.CALLBACK:
                    out.replies.append(AnswerCallback(text, alert=True))
            elif incoming.kind == IncomingKind.CALLBACK:
                out.replies.append(AnswerCallback(text, alert=error.code not in _STALE))
                if error.code in _STALE:
                    if incoming.message_id is not None and incoming.message_has_buttons:
                        # left alone when it is part of a live or finished screen (bots/delivery/live_screens.py)
                        out.replies.append(Expire(incoming.message_id, t("screen_expired"),
                                                  caption=incoming.message_is_photo))
                    turn.t = t
                    current_screen(turn)
            elif incoming.kind != IncomingKind.TEXT or not warn_on_screen(turn, text, incoming.text):
                out.replies.append(SendText(text))
        if incoming.kind == IncomingKind.CALLBACK and not any(isinstance(r, AnswerCallback) for r in out.replies):
            out.replies.append(AnswerCallback())
        return out

    def failure(self, incoming: Incoming, unit: UnitOfWork) -> Outgoing:
        """What a player is told when handling their update failed (a bug, logged): nothing of it
        was kept, and /play goes on from where they were. Read in `unit`, the update's transaction.
        Inline mode gets no answer: the client asks again."""
        if incoming.kind in GUEST_KINDS:
            return Outgoing(incoming.chat_id)
        player = self.game.within(unit).players.find(incoming.user_id) if incoming.user_id else None
        t = catalogue(player.language if player and player.language else language_hint(incoming.language_code))
        if incoming.in_group:  # said to the presser alone, never posted in the group
            return Outgoing(incoming.chat_id, [AnswerCallback(t("failed"), alert=True)] if incoming.callback_id
                            else [], callback_id=incoming.callback_id)
        out = Outgoing(incoming.chat_id, [SendText(t("failed"))], callback_id=incoming.callback_id,
                       player_id=player.id if player else None)
        if incoming.kind == IncomingKind.CALLBACK:
            out.replies.append(AnswerCallback())
        return out


def group_member(game: Game, incoming: Incoming) -> PlayerState:
    """Who acts in a group: their player row when they started the bot privately, else nobody (id
    0, not onboarded). A press or a command in a group registers no one: only players who started
    the bot and consented are recorded."""
    row = game.players.find(incoming.user_id) if incoming.user_id else None
    if row is None:
        return PlayerState(0, None, False, False, None, False)
    note_player(row.id)
    return PlayerState.of(row, moderator=game.moderators.allows(row))


def language_hint(language_code: str | None) -> Language:
    """The game language to speak to someone who has not chosen one, from their Telegram client's."""
    code = (language_code or "").lower()
    return next((Language(language) for language in LANGUAGES if code.startswith(language)), Language.EN)
