"""The conversation's router: every command, button and awaited text has one declared route, and
each route says what it needs (an onboarded player, a moderator) where it is registered.

Feature modules (bots/handlers/) each make a `Router` and register on it; the root includes them
all, as aiogram's `dp.include_routers` does. What a player's update reaches:

- a command: the route of its name, or the route for unknown commands;
- a button: the route of its decoded `callbacks.ButtonData` type, which the handler receives typed
  (as aiogram's `CallbackData.filter()` hands over `callback_data`); data that decodes to nothing
  is a stale button;
- text: the route of the player's awaited input when there is one (as aiogram's `StatesGroup`
  states; stored on the player row by `game.awaited`, good for one message), else the text route;
- any other kind of update (`IncomingKind`): the route of that kind;
- inline mode (`GUEST_KINDS`): a guest route, handed a `GuestTurn`: no player row is made or read
  for whoever sent it (they may never have started the bot), so such a route needs nothing.

A command or a button press forgets any awaited input: a prompt is answered by the very next text only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bots import callbacks
from bots.messages.catalogue import Catalogue
from bots.messages.incoming import GUEST_KINDS, Incoming, IncomingKind
from bots.messages.replies import Outgoing, Reply
from core.game import Game, GameError
from core.vocabulary import AwaitedInput, ErrorCode
from storage.models import Player


@dataclass(frozen=True)
class PlayerState:
    """The player a turn is for, as values read once from their row and never written back: changes
    go through the engine, and a handler that needs the new state reads it again (`Turn.reread`)."""

    id: int
    language: str | None
    onboarded: bool  # chose a language and consents: may play
    moderator: bool  # as the game's one moderator policy (`game.moderators`) says
    awaiting: AwaitedInput | None
    leaderboard_opt_in: bool

    @classmethod
    def of(cls, row: Player, *, moderator: bool) -> PlayerState:
        onboarded = row.language is not None and row.consent_at is not None and row.consent_withdrawn_at is None
        awaiting = AwaitedInput(row.awaiting_kind) if row.awaiting_kind is not None else None
        return cls(row.id, row.language, onboarded, moderator, awaiting, bool(row.leaderboard_opt_in))


@dataclass
class Turn:
    """One update being handled: the game, what the player did, who they are, the catalogue of
    their language, and the replies gathered so far."""

    game: Game
    incoming: Incoming
    player: PlayerState
    t: Catalogue
    out: Outgoing
    bot_key: str | None = None  # the bot the update came through

    def say(self, *replies: Reply) -> None:
        self.out.replies.extend(replies)

    def reread(self) -> PlayerState:
        """The player as the database has them now (after the engine changed their language or consent)."""
        row = self.game.players.get(self.player.id)
        self.player = PlayerState.of(row, moderator=self.game.moderators.allows(row))
        return self.player


@dataclass
class GuestTurn:
    """An update from someone who may not be a player (inline mode): the game, what they did, the
    bot it came through and the languages that bot serves, the catalogue, the replies so far."""

    game: Game
    incoming: Incoming
    bot_key: str
    bot_languages: tuple[str, ...]
    t: Catalogue
    out: Outgoing

    def say(self, *replies: Reply) -> None:
        self.out.replies.extend(replies)


Handler = Callable[..., None]  # (turn) or (turn, typed button) or (turn, awaited reference)


@dataclass(frozen=True)
class Route:
    handler: Handler
    onboarded: bool = True  # the player must have chosen a language and consented
    moderator: bool = False  # the player must be a moderator


class Router:
    """Routes by declared key; `include` merges feature routers into one, refusing duplicates."""

    def __init__(self) -> None:
        self.commands: dict[str, Route] = {}
        self.buttons: dict[type[callbacks.ButtonData], Route] = {}
        self.states: dict[AwaitedInput, Route] = {}
        self.kinds: dict[IncomingKind, Route] = {}
        self.unknown: dict[str, Route] = {}  # "command": the route of a command no one registered
        # Commands sent in a group chat (bots/handlers/groups.py), apart from the private ones: `/top`
        # in a group is the group's table. "group" in `unknown` takes the rest, in silence.
        self.group_commands: dict[str, Route] = {}
        self.guests: dict[IncomingKind, Handler] = {}  # inline mode: handlers of a GuestTurn
        # What a player is told when a route's need is not met, keyed by the need.
        self.refusals: dict[str, Handler] = {}

    # ------------------------------------------------------------------ registration
    def command(self, *names: str, onboarded: bool = True, moderator: bool = False):
        """`/name` for each name; the handler takes the turn (the arguments are `turn.incoming.args`)."""
        return self._register(self.commands, names, onboarded, moderator)

    def unknown_command(self, *, onboarded: bool = True):
        return self._register(self.unknown, ("command",), onboarded, False)

    def group_command(self, *names: str, onboarded: bool = False):
        """`/name` sent in a group; the handler takes the turn."""
        return self._register(self.group_commands, names, onboarded, False)

    def unknown_group_command(self):
        return self._register(self.unknown, ("group",), False, False)

    def button(self, *kinds: type[callbacks.ButtonData], onboarded: bool = True, moderator: bool = False):
        """A press of a button of these data types; the handler takes the turn and the decoded data."""
        return self._register(self.buttons, kinds, onboarded, moderator)

    def awaiting(self, state: AwaitedInput, *, onboarded: bool = True, moderator: bool = False):
        """The text that answers a prompt; the handler takes the turn and the prompt's reference."""
        return self._register(self.states, (AwaitedInput(state),), onboarded, moderator)

    def message(self, *kinds: IncomingKind, onboarded: bool = True):
        """Updates of these kinds (text not awaited by a prompt, stickers, edits …)."""
        return self._register(self.kinds, kinds, onboarded, False)

    def guest(self, *kinds: IncomingKind):
        """Updates of these kinds (GUEST_KINDS) from anyone; the handler takes a GuestTurn."""
        def register(handler: Handler) -> Handler:
            for kind in kinds:
                if kind not in GUEST_KINDS:
                    raise ValueError(f"{kind} comes from a player: register it with `message`")
                _add(self.guests, kind, handler)
            return handler
        return register

    def refusal(self, need: str):
        """What the player is told when a route needs `need` ("onboarded", "moderator") and they lack it."""
        def register(handler: Handler) -> Handler:
            _add(self.refusals, need, handler)
            return handler
        return register

    def include(self, *routers: Router) -> Router:
        for router in routers:
            for mine, theirs in ((self.commands, router.commands), (self.buttons, router.buttons),
                                 (self.states, router.states), (self.kinds, router.kinds),
                                 (self.unknown, router.unknown), (self.refusals, router.refusals),
                                 (self.group_commands, router.group_commands), (self.guests, router.guests)):
                for key, value in theirs.items():
                    _add(mine, key, value)
        return self

    def check_complete(self) -> None:
        """Every button the codec knows, every awaited input and every kind of update has a route."""
        missing = [f"button {kind.__name__}" for kind in callbacks.ACTIONS.values() if kind not in self.buttons]
        missing += [f"awaited {state}" for state in AwaitedInput if state not in self.states]
        missing += [f"kind {kind}" for kind in IncomingKind
                    if kind not in (IncomingKind.COMMAND, IncomingKind.CALLBACK, *GUEST_KINDS) and kind not in self.kinds]
        missing += [f"guest {kind}" for kind in GUEST_KINDS if kind not in self.guests]
        missing += [f"refusal {need}" for need in ("onboarded", "moderator") if need not in self.refusals]
        missing += ["unknown commands"] if "command" not in self.unknown else []
        missing += ["unknown group commands"] if "group" not in self.unknown else []
        if missing:
            raise LookupError(f"the router has no route for: {', '.join(missing)}")

    def _register(self, table: dict, keys, onboarded: bool, moderator: bool):
        def register(handler: Handler) -> Handler:
            for key in keys:
                _add(table, key, Route(handler, onboarded, moderator))
            return handler
        return register

    # ------------------------------------------------------------------ dispatch
    def dispatch(self, turn: Turn) -> None:
        route, arguments = self._route(turn)
        if route.moderator and not turn.player.moderator:
            self.refusals["moderator"](turn)
        elif route.onboarded and not turn.player.onboarded:
            self.refusals["onboarded"](turn)
        else:
            route.handler(turn, *arguments)

    def serve(self, turn: GuestTurn) -> None:
        self.guests[IncomingKind(turn.incoming.kind)](turn)

    def _route(self, turn: Turn) -> tuple[Route, tuple[Any, ...]]:
        incoming, player = turn.incoming, turn.player
        if incoming.in_group and incoming.kind == IncomingKind.COMMAND:
            return self.group_commands.get(incoming.command) or self.unknown["group"], ()
        if incoming.kind in (IncomingKind.COMMAND, IncomingKind.CALLBACK) and player.awaiting is not None \
                and not incoming.in_group:
            turn.game.awaited.forget(player.id)
        if incoming.kind == IncomingKind.COMMAND:
            return self.commands.get(incoming.command) or self.unknown["command"], ()
        if incoming.kind == IncomingKind.CALLBACK:
            button = callbacks.decode(incoming.callback_data)
            route = self.buttons.get(type(button)) if button is not None else None
            if route is None:
                raise GameError(ErrorCode.STALE)
            return route, (button,)
        if incoming.kind == IncomingKind.TEXT and player.awaiting is not None:
            waiting = turn.game.awaited.take(player.id)
            if waiting is not None:
                state, reference = waiting
                return self.states[state], (reference,)
        return self.kinds[IncomingKind(incoming.kind)], ()


def _add(table: dict, key, value) -> None:
    if key in table:
        raise ValueError(f"two routes for {key!r}")
    table[key] = value
