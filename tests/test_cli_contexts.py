"""`sticktionary contexts list|approve|reject`: a moderator decides imported chat contexts from a shell,
on SQLite and PostgreSQL."""

import pytest
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from core.game import Game
from core.importing import import_usticker
from core.search import SearchIndexes
from offline.demo_pack import PACK_DIR
from sticktionary.cli import app
from storage.models import ChatContext, ContextStatus, Review

runner = CliRunner()
MODERATOR = 4242


@pytest.fixture
def candidates(db, monkeypatch, settings):
    """The demo pack's 104 contexts (52 en, 52 zh) waiting for review, and the CLI pointed at them."""
    monkeypatch.setenv("STICKTIONARY_DATABASE_URL", db.url.render_as_string(hide_password=False))
    monkeypatch.setenv("STICKTIONARY_MODERATORS", str(MODERATOR))
    from storage.settings import get_settings

    get_settings.cache_clear()
    import_usticker(db, PACK_DIR, sticker_root=PACK_DIR, progress=False, workers=1)
    yield db
    get_settings.cache_clear()


def _moderator(db, settings) -> int:
    game = Game.open(db, settings, indexes=SearchIndexes())
    player = game.players.register(MODERATOR, "Mo")
    game.players.set_moderator(player.id)
    return player.id


def _statuses(db) -> dict[str, int]:
    with Session(db) as session:
        rows = session.exec(select(ChatContext.status)).all()
    return {status: rows.count(status) for status in set(rows)}


def test_no_moderator_yet_says_what_to_do(candidates):
    result = runner.invoke(app, ["contexts", "list"])
    assert result.exit_code == 2
    assert "send /start to your bot" in result.output and "4242" in result.output
    assert _statuses(candidates) == {ContextStatus.CANDIDATE: 104}


def test_list_approve_reject(candidates, settings):
    moderator = _moderator(candidates, settings)
    result = runner.invoke(app, ["contexts", "list", "--limit", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "104 contexts wait for review (en 52, zh 52)"
    assert lines[1].startswith("#1 ") and "sticker 7100000000000000000.png" in lines[1] and "01.json#" in lines[1]
    assert "[the sticker]" in result.output and "… and 102 more" in result.output

    result = runner.invoke(app, ["contexts", "approve", "1", "2", "999"])
    assert result.exit_code == 0, result.output
    assert "2 contexts approved; 102 wait for review" in result.output
    assert "not waiting for review" in result.output and "999" in result.output
    result = runner.invoke(app, ["contexts", "reject", "1"])  # decided already: nothing changes
    assert "0 contexts rejected" in result.output

    result = runner.invoke(app, ["contexts", "reject", "--all", "--lang", "zh"])
    assert result.exit_code == 0 and "52 contexts rejected; 50 wait for review" in result.output
    result = runner.invoke(app, ["contexts", "approve", "--all"])
    assert result.exit_code == 0 and "50 contexts approved; 0 wait for review" in result.output
    assert _statuses(candidates) == {ContextStatus.APPROVED: 52, ContextStatus.REJECTED: 52}
    assert runner.invoke(app, ["contexts", "list"]).output.startswith("0 contexts wait for review")

    with Session(candidates) as session:
        reviews = session.exec(select(Review).where(col(Review.context_id).is_not(None))).all()
    assert len(reviews) == 104 and {r.moderator_id for r in reviews} == {moderator}
    assert sorted({r.action for r in reviews}) == ["approve_context", "reject_context"]


def test_wrong_use_gets_one_clear_line(candidates, settings):
    _moderator(candidates, settings)
    result = runner.invoke(app, ["contexts", "approve"])
    assert result.exit_code == 2 and "say which" in result.output
    result = runner.invoke(app, ["contexts", "approve", "1", "--all"])
    assert result.exit_code == 2 and "say which" in result.output
    result = runner.invoke(app, ["contexts", "approve", "--all", "--lang", "fr"])
    assert result.exit_code == 2 and "en or zh" in result.output
    result = runner.invoke(app, ["contexts", "list", "--as", "1"])  # no such player
    assert result.exit_code == 2 and "(1)" in result.output
    assert _statuses(candidates) == {ContextStatus.CANDIDATE: 104}
