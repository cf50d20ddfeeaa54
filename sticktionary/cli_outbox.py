"""`sticktionary outbox`: messages waiting for the bots, and dead letters."""

from __future__ import annotations

from typing import Annotated

import typer

from sticktionary.cli_common import open_database
from storage.settings import get_settings

outbox_app = typer.Typer(help="The outbox: messages waiting for the bots, and dead letters. "
                              "Without a subcommand: list them (as `outbox list`).", invoke_without_command=True)


def _outbox():
    from core.outbox import Outbox
    from storage.db import Database

    settings = get_settings()
    return Outbox(Database(open_database()), max_attempts=settings.delivery.outbox_max_attempts,
                  lease_seconds=settings.delivery.outbox_lease_seconds)


@outbox_app.callback()
def outbox_default(context: typer.Context) -> None:
    if context.invoked_subcommand is None:
        outbox_list(status=["pending", "sending", "dead"], limit=50)


@outbox_app.command("list")
def outbox_list(
    status: Annotated[list[str] | None, typer.Option(help="pending, sending, held, sent or dead (repeatable); "
                                                         "default: all but sent")] = None,
    limit: Annotated[int, typer.Option(min=1, help="rows shown")] = 50,
) -> None:
    """Counts by state, then the oldest rows in the chosen states: whom each is for, the bot that
    delivers it, attempts, when it is next tried, and why it failed."""
    from core.outbox import OutboxStatus

    status = status or ["pending", "sending", "dead"]
    known = {s.value for s in OutboxStatus}
    if bad := [s for s in status if s not in known]:
        raise typer.BadParameter(f"{', '.join(bad)}: the states are {', '.join(sorted(known))}", param_hint="--status")
    outbox = _outbox()
    counts = outbox.counts()
    typer.echo("  ".join(f"{name} {counts[name]}" for name in ("pending", "sending", "held", "sent", "dead")))
    for message, bot_key in outbox.listing(status, limit):
        to = (f"player {message.player_id} via {bot_key or 'their language'}" if message.player_id is not None
              else f"chat {message.chat_id}" if message.chat_id is not None else "moderators")
        when = (f"lease until {message.lease_until:%Y-%m-%d %H:%M:%S}" if message.status == "sending"
                else f"next {message.next_attempt_at:%Y-%m-%d %H:%M:%S}" if message.status == "pending" else "")
        typer.echo(f"#{message.id:<7} {message.status:<8} {message.kind:<16} {to}  attempts {message.attempts}  {when}"
                   .rstrip())
        if message.last_error:
            typer.echo(f"{'':9}{message.last_error}")


@outbox_app.command("retry")
def outbox_retry(
    ids: Annotated[list[int] | None, typer.Argument(help="dead letters to retry, by id")] = None,
    all_dead: Annotated[bool, typer.Option("--all", help="retry every dead letter")] = False,
) -> None:
    """Put dead letters back in the queue, attempts reset (after fixing what killed them)."""
    if not ids and not all_dead:
        typer.echo("say which: `sticktionary outbox retry ID…`, or `--all` for every dead letter", err=True)
        raise typer.Exit(2)
    retried = _outbox().retry_dead(None if all_dead else ids)
    typer.echo(f"{retried} dead letters back in the queue")
    if ids and retried < len(ids):
        typer.echo(f"{len(ids) - retried} of the ids given are not dead letters (see `sticktionary outbox list`)",
                   err=True)


@outbox_app.command("reroute")
def outbox_reroute(
    old: Annotated[str, typer.Argument(help="the key of a bot that no longer runs (its name, or token number)")],
    new: Annotated[str, typer.Argument(help="the key of the bot its players should hear from")],
) -> None:
    """Messages to a player go through the bot they last wrote to: after renaming or retiring a bot,
    move its players (and what waits for them) to another."""
    moved = _outbox().reroute(old, new)
    typer.echo(f"{moved} players of bot {old} now hear from bot {new}")


@outbox_app.command("purge")
def outbox_purge(
    sent_before: Annotated[str, typer.Option(help="delete messages sent before this date or time (ISO 8601, UTC)")],
) -> None:
    """Delete sent messages older than a date. Their dedupe keys go too: a job re-run for a purged
    period would post again."""
    from datetime import UTC, datetime

    try:
        before = datetime.fromisoformat(sent_before)
    except ValueError:
        raise typer.BadParameter("a date like 2026-11-01 or 2026-11-01T12:00", param_hint="--sent-before") from None
    if before.tzinfo is None:
        before = before.replace(tzinfo=UTC)
    typer.echo(f"{_outbox().purge_sent(before)} sent messages deleted")
