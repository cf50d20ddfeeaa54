"""The conversation's router: every route declared once with what it needs, buttons routed by their
typed data, awaited text by its state, and the needs checked before any handler runs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bots import callbacks
from bots.handlers import ROUTER
from bots.messages.catalogue import catalogue
from bots.messages.incoming import Incoming, IncomingKind, incoming_from_update
from bots.messages.replies import Outgoing
from bots.router import PlayerState, Router, Turn
from core.game import GameError
from core.vocabulary import AwaitedInput


def test_every_button_state_and_kind_has_a_route_and_commands_declare_their_needs():
    ROUTER.check_complete()
    needs = {name: (route.onboarded, route.moderator) for name, route in ROUTER.commands.items()}
    assert needs["start"] == needs["lang"] == needs["help"] == (False, False)
    assert needs["play"] == needs["me"] == needs["top"] == needs["forget"] == (True, False)
    assert needs["review"] == needs["prizes"] == (False, True)
    assert ROUTER.buttons[callbacks.ReviewAccept].moderator and ROUTER.buttons[callbacks.PrizeDelivered].moderator
    assert not ROUTER.buttons[callbacks.ChooseLanguage].onboarded and ROUTER.buttons[callbacks.TogglePick].onboarded
    assert ROUTER.states[AwaitedInput.CORRECT].moderator and ROUTER.states[AwaitedInput.SUGGEST].onboarded


def test_a_router_missing_a_route_or_declaring_one_twice_is_refused():
    with pytest.raises(LookupError, match="NextTask"):
        Router().check_complete()
    router = Router()
    router.command("play")(lambda turn: None)
    with pytest.raises(ValueError, match="two routes"):
        router.command("play")(lambda turn: None)
    with pytest.raises(ValueError, match="two routes"):
        Router().include(router, router)


def _turn(kind: IncomingKind, *, onboarded: bool = True, moderator: bool = False, awaiting=None, taken=None,
          **fields) -> Turn:
    awaited = SimpleNamespace(forgotten=[], take=lambda player_id: taken)
    awaited.forget = awaited.forgotten.append
    player = PlayerState(7, "en", onboarded, moderator, awaiting, False)
    return Turn(SimpleNamespace(awaited=awaited), Incoming(kind, 1, 1, 1, **fields), player, catalogue("en"),
                Outgoing(1, player_id=7))


def _recording_router(seen: list) -> Router:
    router = Router()
    router.refusal("onboarded")(lambda turn: seen.append("onboard first"))
    router.refusal("moderator")(lambda turn: seen.append("moderators only"))
    router.command("play")(lambda turn: seen.append("play"))
    router.command("review", onboarded=False, moderator=True)(lambda turn: seen.append("review"))
    router.unknown_command()(lambda turn: seen.append("help"))
    router.button(callbacks.TogglePick)(lambda turn, button: seen.append(button))
    router.awaiting(AwaitedInput.SUGGEST)(lambda turn, ref: seen.append(("suggest", ref)))
    router.message(IncomingKind.TEXT)(lambda turn: seen.append("query"))
    return router


def test_needs_are_checked_before_the_handler_runs():
    seen: list = []
    router = _recording_router(seen)
    router.dispatch(_turn(IncomingKind.COMMAND, command="play", onboarded=False))
    router.dispatch(_turn(IncomingKind.COMMAND, command="review", onboarded=False))
    router.dispatch(_turn(IncomingKind.COMMAND, command="review", onboarded=False, moderator=True))
    router.dispatch(_turn(IncomingKind.COMMAND, command="nope"))
    assert seen == ["onboard first", "moderators only", "review", "help"]


def test_buttons_arrive_typed_and_unknown_data_is_stale():
    seen: list = []
    router = _recording_router(seen)
    router.dispatch(_turn(IncomingKind.CALLBACK, callback_data="pk:12:3"))
    assert seen == [callbacks.TogglePick(12, 3)]
    for data in ("pk:12:300", "garbage", "next"):  # out of range, unknown, known but not routed here
        with pytest.raises(GameError):
            router.dispatch(_turn(IncomingKind.CALLBACK, callback_data=data))


def test_awaited_text_goes_to_its_state_once_and_a_command_forgets_it():
    seen: list = []
    router = _recording_router(seen)
    router.dispatch(_turn(IncomingKind.TEXT, text="3 cat", awaiting=AwaitedInput.SUGGEST,
                          taken=(AwaitedInput.SUGGEST, 44)))
    router.dispatch(_turn(IncomingKind.TEXT, text="a query", awaiting=AwaitedInput.SUGGEST, taken=None))  # expired
    turn = _turn(IncomingKind.COMMAND, command="play", awaiting=AwaitedInput.SUGGEST)
    router.dispatch(turn)
    assert seen == [("suggest", 44), "query", "play"] and turn.game.awaited.forgotten == [7]


def test_every_kind_of_update_parsed_is_an_incoming_kind():
    user = {"id": 5, "first_name": "A"}
    chat = {"id": 5, "type": "private"}
    updates = [{"message": {"text": "/play", "from": user, "chat": chat}},
               {"message": {"text": "hello", "from": user, "chat": chat}},
               {"message": {"text": "bad \ud800", "from": user, "chat": chat}},
               {"message": {"sticker": {}, "from": user, "chat": chat}},
               {"message": {"photo": [], "from": user, "chat": chat}},
               {"edited_message": {"text": "x", "from": user, "chat": chat}},
               {"callback_query": {"id": "1", "data": "next", "from": user, "message": {"chat": chat}}},
               {"my_chat_member": {"chat": {"id": -7, "type": "group"}, "from": user,
                                   "new_chat_member": {"status": "member", "user": {"id": 1}}}},
               {"message": {"migrate_to_chat_id": -1007, "chat": {"id": -7, "type": "group"}}},
               {"inline_query": {"id": "7", "query": "so tired", "offset": "", "from": user}},
               {"chosen_inline_result": {"result_id": "3.1", "query": "so tired", "from": user}}]
    kinds = [incoming_from_update({"update_id": n, **update}).kind for n, update in enumerate(updates, 1)]
    assert sorted(kinds) == sorted(IncomingKind) and all(isinstance(kind, IncomingKind) for kind in kinds)


def test_every_notice_kind_has_one_renderer():
    from bots.screens.notices import MODERATOR_TEXTS, PLAYER_TEXTS
    from core.vocabulary import PLAYER_NOTICES, NoticeKind

    assert set(PLAYER_TEXTS) == set(PLAYER_NOTICES)
    from bots.notices import SCREEN_NOTICES

    assert set(PLAYER_TEXTS) | set(MODERATOR_TEXTS) | set(SCREEN_NOTICES) == set(NoticeKind)
    assert not set(PLAYER_TEXTS) & set(MODERATOR_TEXTS)
