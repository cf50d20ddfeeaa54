"""Where the engine's steps run: the database (each step its own transaction) or one update's unit of
work (each step a savepoint of it), chosen explicitly by the caller (storage/db.py)."""

from __future__ import annotations

import pytest
from sqlmodel import select

from core.game import GameError
from core.vocabulary import ErrorCode
from storage.db import Database
from storage.models import Player, Sticker
from tests.helpers import make_player, make_world


def _sticker(key: str) -> Sticker:
    return Sticker(key=key, file_path=f"stickers/{key}", format="png")


def _keys(database: Database) -> set[str]:
    with database.read() as session:
        return set(session.exec(select(Sticker.key)).all())


def test_a_unit_commits_its_steps_together_when_it_ends(db):
    database = Database(db)
    with database.unit() as unit:
        with unit.write() as session:
            session.add(_sticker("a.png"))
        with unit.write() as session:
            session.add(_sticker("b.png"))
        with unit.read() as session:  # the unit reads what it wrote so far
            assert set(session.exec(select(Sticker.key)).all()) == {"a.png", "b.png"}
        assert _keys(database) == set()  # others see nothing before the unit commits
    assert _keys(database) == {"a.png", "b.png"}


def test_a_refused_step_undoes_only_itself_and_a_failed_unit_keeps_nothing(db):
    database = Database(db)
    with database.unit() as unit:
        with unit.write() as session:
            session.add(_sticker("kept.png"))
        with pytest.raises(GameError), unit.write() as session:
            session.add(_sticker("refused.png"))
            session.flush()
            raise GameError(ErrorCode.STALE)
        with unit.write() as session:
            session.add(_sticker("after.png"))
    assert _keys(database) == {"kept.png", "after.png"}

    with pytest.raises(RuntimeError), database.unit() as unit:
        with unit.write() as session:
            session.add(_sticker("lost.png"))
        raise RuntimeError("the update failed after its steps")
    assert _keys(database) == {"kept.png", "after.png"}


def test_an_ended_unit_refuses_further_steps(db):
    with Database(db).unit() as unit:
        pass
    with pytest.raises(RuntimeError, match="ended"), unit.write():
        pass
    with pytest.raises(RuntimeError, match="ended"), unit.read():
        pass



def test_a_write_of_its_own_inside_a_unit_is_refused_at_once_on_sqlite(db):
    """Writing past the unit (with the Database, not the unit) would wait for the unit itself."""
    if db.dialect.name != "sqlite":
        pytest.skip("PostgreSQL has no process-wide writer lock to notice it with")
    database = Database(db)
    with database.unit() as unit:
        with unit.write() as session:
            session.add(_sticker("in-unit.png"))
        with pytest.raises(RuntimeError, match="already has a write transaction"), database.write():
            pass
    with database.write() as session:  # the lock was handed back
        session.add(_sticker("after.png"))
    assert _keys(database) == {"in-unit.png", "after.png"}

def test_the_game_within_a_unit_binds_every_service_and_the_outbox_to_it(db, settings):
    game = make_world(db, settings)
    assert isinstance(game.db, Database)
    with game.db.unit() as unit:
        bound = game.within(unit)
        # every part with a `db` but the search follower, which reads the change log on its own
        services = {name: service for name, service in vars(bound).items()
                    if hasattr(service, "db") and name != "search"}
        assert {"players", "assignment", "labeling", "retrieval", "standings", "moderation", "expiry", "prizes",
                "awaited", "outbox"} <= set(services)
        assert {name for name, service in services.items() if service.db is not unit} == set()
        # the game outside the update is left as it was
        assert {name for name in services if getattr(game, name).db is not game.db} == set()
        assert bound.indexes is game.indexes

        player_id = make_player(bound, 501)
        bound.players.set_nickname(player_id, "Unit")
        assert bound.players.get(player_id).nickname == "Unit"
        assert game.players.find(501) is None  # not committed yet
    assert game.players.get(player_id).nickname == "Unit"


def test_a_game_step_refused_inside_a_unit_leaves_the_unit_usable(db, settings):
    game = make_world(db, settings)
    first, second = make_player(game, 601), make_player(game, 602)
    game.players.set_nickname(first, "Taken")
    with game.db.unit() as unit:
        bound = game.within(unit)
        with pytest.raises(GameError) as error:
            bound.players.set_nickname(second, "Taken")
        assert error.value.code == ErrorCode.NICKNAME_TAKEN
        bound.players.set_leaderboard_opt_in(second, True)
    with game.db.read() as session:
        row = session.exec(select(Player).where(Player.id == second)).one()
    assert row.nickname is None and row.leaderboard_opt_in is True



def _command(update_id: int, user_id: int, text: str) -> dict:
    user = {"id": user_id, "is_bot": False, "first_name": "Uma", "language_code": "en"}
    return {"update_id": update_id, "message": {"message_id": update_id, "date": 0, "text": text, "from": user,
                                                "chat": {"id": user_id, "type": "private"}}}


def test_an_update_is_handled_in_the_unit_the_inbox_passes_down(db, settings):
    """What a handler asks of the game is kept with the update's row; a handler that fails after a
    step keeps nothing of it, and the failure reply is read in the same unit."""
    from bots.conversation import Conversation
    from bots.inbox import Inbox
    from bots.messages.catalogue import catalogue
    from bots.messages.incoming import incoming_from_update
    from bots.messages.replies import SendText
    from bots.router import Router
    from storage.models import InboxStatus, InboxUpdate

    router = Router()

    @router.command("nick", onboarded=False)
    def nick(turn):
        turn.game.players.set_nickname(turn.player.id, turn.incoming.args)
        assert turn.game.db is not game.db  # the handler's game works in the update's unit

    @router.command("boom", onboarded=False)
    def boom(turn):
        turn.game.players.set_nickname(turn.player.id, "Lost")
        raise ValueError("a bug after a step")

    game = make_world(db, settings)
    conversation = Conversation(game, router=router)
    inbox = Inbox(game.db, "uow", incoming_from_update,
                  lambda incoming, unit: conversation.handle(incoming, unit, bot_key="uow"), conversation.failure)
    [lane] = inbox.store([_command(1, 700, "/nick Kept")])
    taken = inbox.take_next(lane)
    assert taken.outcome == "ok"
    player = game.players.find(700)
    assert player.nickname == "Kept" and player.bot_key == "uow"
    inbox.mark_done(1)

    inbox.store([_command(2, 700, "/boom")])
    taken = inbox.take_next(lane)
    assert taken.outcome == "failed"
    assert [reply.text for reply in taken.outgoing.replies if isinstance(reply, SendText)] == [
        catalogue("en")("failed")]
    assert taken.outgoing.player_id == player.id  # failure() found the player in the unit
    assert game.players.find(700).nickname == "Kept"
    with game.db.read() as session:
        row = session.exec(select(InboxUpdate).where(InboxUpdate.bot_key == "uow",
                                                     InboxUpdate.update_id == 2)).one()
    assert row.status == InboxStatus.FAILED and "a bug after a step" in row.error
