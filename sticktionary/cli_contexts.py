"""`sticktionary contexts`: moderators approve or reject curated chat contexts from a shell.

Imported contexts wait as candidates until a moderator decides (docs/design.md, "Data": curation
ends in a moderator review). The decisions go through the engine, as a moderator's in the bot
do, so the same rules and the same audit trail apply; this module only finds the moderator,
shows the contexts and reports what was decided.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # the tables are imported when a command runs: every command's start-up (and --help) stays light
    from storage.models import ChatContext

contexts_app = typer.Typer(help="Curated chat contexts waiting for a moderator: list them, approve or reject them "
                                "(only approved ones enter the game).", no_args_is_help=True)

Language = Annotated[str | None, typer.Option("--lang", help="only this language: en or zh")]
Moderator = Annotated[int | None, typer.Option(
    "--as", help="the Telegram user id of the moderator deciding (default: the first in STICKTIONARY_MODERATORS "
                 "who has written to a bot)")]

SHOWN_CHARS = 120  # of each message in `contexts list`
BATCH = 200  # contexts fetched at a time by `--all`


class ContextReview:
    """The engine's review of chat contexts, for one moderator. The only place this command calls
    the engine: listing the candidates and deciding one."""

    def __init__(self, db, settings, moderator_id: int):
        from core.game import Game
        from core.search import SearchIndexes

        # Deciding contexts never searches: no index is built.
        self._game = Game.open(db, settings, indexes=SearchIndexes())
        self._moderator_id = moderator_id

    def pending(self, language: str | None, limit: int) -> list[ChatContext]:
        return self._game.moderation.pending_contexts(self._moderator_id, language, limit)

    def decide(self, context_id: int, approve: bool) -> bool:
        """True when this call decided it; False when it was not waiting (decided before, or no such id)."""
        from core.game import GameError

        try:
            self._game.moderation.review_context(self._moderator_id, context_id, approve)
        except GameError as error:
            if error.code == "already_reviewed":
                return False
            raise
        return True


def _setup():
    from storage.db import make_engine
    from storage.migrate import upgrade
    from storage.settings import get_settings

    settings = get_settings()
    engine = make_engine(settings.storage.database_url)
    upgrade(engine)  # as every command that writes: the schema first
    return engine, settings


def _moderator(db, settings, telegram_user_id: int | None) -> int:
    """The player id of the deciding moderator; a clear line and exit 2 when there is none."""
    from sqlmodel import Session, col, select

    from storage.models import Player

    wanted = [telegram_user_id] if telegram_user_id is not None else list(settings.telegram.moderators)
    if not wanted:
        typer.echo("no moderator: set STICKTIONARY_MODERATORS to your Telegram user id (README, \"Go live\"), "
                   "send /start to your bot, then run this again; or name one with --as USER_ID", err=True)
        raise typer.Exit(2)
    with Session(db) as session:
        players = {p.telegram_user_id: p for p in session.exec(
            select(Player).where(col(Player.telegram_user_id).in_(wanted))).all()}
    for user_id in wanted:
        player = players.get(user_id)
        if player is not None and player.is_moderator:
            return player.id
    listed = ", ".join(map(str, wanted))
    if telegram_user_id is not None and telegram_user_id in players:
        typer.echo(f"Telegram user {telegram_user_id} is not a moderator: add them to STICKTIONARY_MODERATORS and "
                   "have them write to a bot once", err=True)
    else:
        typer.echo(f"no moderator has written to a bot yet ({listed}): send /start to your bot from that account "
                   "(with the bot running), then run this again; or import with --approve to skip the review",
                   err=True)
    raise typer.Exit(2)


def _language(language: str | None) -> str | None:
    if language is not None and language not in ("en", "zh"):
        raise typer.BadParameter("the game has two languages: en or zh", param_hint="--lang")
    return language


def _waiting(db, language: str | None) -> dict[str, int]:
    from sqlmodel import Session, func, select

    from storage.models import ChatContext, ContextStatus

    statement = (select(ChatContext.language, func.count()).where(ChatContext.status == ContextStatus.CANDIDATE)
                 .group_by(ChatContext.language))
    if language:
        statement = statement.where(ChatContext.language == language)
    with Session(db) as session:
        return {lang: count for lang, count in session.exec(statement).all()}


def _printable(text: str) -> str:
    """Imported text is anyone's: no control or format character reaches the terminal."""
    shown = "".join(ch if ch.isprintable() else " " for ch in text)
    return shown if len(shown) <= SHOWN_CHARS else shown[:SHOWN_CHARS - 1] + "…"


@contexts_app.command("list")
def contexts_list(
    lang: Language = None,
    limit: Annotated[int, typer.Option(min=1, help="contexts shown")] = 20,
    moderator: Moderator = None,
) -> None:
    """The contexts waiting for review, oldest first.

    Each with its id, language, sticker, source file and message, and the dialogue that led up to the sticker."""
    from sqlmodel import Session, col, select

    from storage.models import Sticker

    db, settings = _setup()
    language = _language(lang)
    review = ContextReview(db, settings, _moderator(db, settings, moderator))
    waiting = _waiting(db, language)
    typer.echo(f"{sum(waiting.values())} contexts wait for review"
               + (f" ({', '.join(f'{lang} {n}' for lang, n in sorted(waiting.items()))})" if waiting else ""))
    contexts = review.pending(language, limit)
    with Session(db) as session:
        keys = dict(session.exec(select(Sticker.id, Sticker.key)
                                 .where(col(Sticker.id).in_([c.sticker_id for c in contexts]))).all())
    for context in contexts:
        typer.echo(f"#{context.id:<7} {context.language}  sticker {keys.get(context.sticker_id, '?')}  "
                   f"{_printable(context.conversation)}#{context.message_id}  {context.word_count} words")
        for message in context.messages:
            said = "[the sticker]" if message.get("target") else "[a sticker]" if message.get("sticker") else \
                _printable(str(message.get("text") or ""))
            typer.echo(f"{'':9}{_printable(str(message.get('sender', '?')))}: {said}")
    if sum(waiting.values()) > len(contexts):
        typer.echo(f"… and {sum(waiting.values()) - len(contexts)} more (--limit)")


def _decide(ids: list[int] | None, every: bool, lang: str | None, moderator: int | None, approve: bool) -> None:
    verb, command = ("approved", "approve") if approve else ("rejected", "reject")
    if bool(ids) == every:
        typer.echo(f"say which: `sticktionary contexts {command} ID…`, or `--all` (with --lang for one language)",
                   err=True)
        raise typer.Exit(2)
    db, settings = _setup()
    language = _language(lang)
    review = ContextReview(db, settings, _moderator(db, settings, moderator))
    if every:
        decided = _decide_all(review, approve, sum(_waiting(db, language).values()), language)
    else:
        if language:
            typer.echo("--lang applies to --all only; deciding the ids given", err=True)
        not_waiting = [i for i in dict.fromkeys(ids) if not review.decide(i, approve)]
        decided = len(dict.fromkeys(ids)) - len(not_waiting)
        if not_waiting:
            typer.echo(f"not waiting for review (decided before, or no such context): "
                       f"{', '.join(map(str, not_waiting))}", err=True)
    left = _waiting(db, None)
    typer.echo(f"{decided} contexts {verb}; {sum(left.values())} wait for review")


def _decide_all(review: ContextReview, approve: bool, total: int, language: str | None) -> int:
    from tqdm import tqdm

    decided = 0
    with tqdm(total=total, unit=" contexts", desc="approve" if approve else "reject", disable=total < BATCH,
              leave=False) as bar:
        while batch := review.pending(language, BATCH):
            decided += sum(review.decide(context.id, approve) for context in _advancing(batch, bar))
    return decided


def _advancing(contexts: Iterable[ChatContext], bar) -> Iterable[ChatContext]:
    for context in contexts:
        yield context
        bar.update(1)


@contexts_app.command("approve")
def contexts_approve(
    ids: Annotated[list[int] | None, typer.Argument(help="contexts to approve, by id (see `contexts list`)")] = None,
    every: Annotated[bool, typer.Option("--all", help="approve every context waiting (with --lang: of one language)")]
    = False,
    lang: Language = None,
    moderator: Moderator = None,
) -> None:
    """Put contexts into the game: labelers get their stickers from approved contexts only."""
    _decide(ids, every, lang, moderator, approve=True)


@contexts_app.command("reject")
def contexts_reject(
    ids: Annotated[list[int] | None, typer.Argument(help="contexts to reject, by id (see `contexts list`)")] = None,
    every: Annotated[bool, typer.Option("--all", help="reject every context waiting (with --lang: of one language)")]
    = False,
    lang: Language = None,
    moderator: Moderator = None,
) -> None:
    """Keep contexts out of the game (the decision is recorded, as a moderator's in the bot)."""
    _decide(ids, every, lang, moderator, approve=False)
