"""`sticktionary bench`: benchmarks that print figures."""

from __future__ import annotations

from typing import Annotated

import typer

from sticktionary.cli_common import check_language, print_result

bench_app = typer.Typer(help="Benchmarks that print figures (use --json for one JSON object).", no_args_is_help=True)


@bench_app.command("search")
def bench_search(stickers: int = 100_000, queries: int = 1000,
                 write_every: Annotated[int, typer.Option(help="one index write per this many searches (0: none)")] = 0,
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Search latency over N stickers, against rank_bm25 and bm25s on the same corpus."""
    from offline.bench.suite import bench_search as run

    print_result(run(stickers=stickers, n_queries=queries, write_every=write_every), as_json)


@bench_app.command("startup")
def bench_startup_command(queries: int = 1_000_000, postgres_url: Annotated[str | None, typer.Option(
        help="admin URL of a PostgreSQL server: the database is made there (default: an SQLite file)")] = None,
        as_json: bool = typer.Option(False, "--json")) -> None:
    """Seconds from process start until a bot could answer, over a database of N usable queries."""
    from offline.bench.suite import bench_startup

    print_result(bench_startup(queries=queries, postgres_admin_url=postgres_url, progress=not as_json), as_json)


@bench_app.command("import")
def bench_import(messages: int = 1_000_000, stickers: int = 104_000,
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """U-Sticker import throughput and peak memory on synthetic data."""
    from offline.bench.suite import bench_import as run

    print_result(run(messages=messages, stickers=stickers), as_json)


@bench_app.command("engine")
def bench_engine(cycles: int = 300, postgres_url: Annotated[str | None, typer.Option(
        help="PostgreSQL server for the second half")] = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Complete label+retrieve cycles per second by simulated players, on SQLite and PostgreSQL."""
    from offline.bench.suite import bench_engine as run

    print_result(run(cycles=cycles, postgres_admin_url=postgres_url), as_json)


@bench_app.command("groups")
def bench_groups(rounds: int = 100, postgres_url: Annotated[str | None, typer.Option(
        help="PostgreSQL server for the second half")] = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """A group round's engine cost: post, three picks, close (three judgments scored), in ms."""
    from offline.bench.group_rounds import bench_group_rounds

    print_result(bench_group_rounds(rounds=rounds, postgres_admin_url=postgres_url or None), as_json)


@bench_app.command("bots")
def bench_bots_command(
    framework: Annotated[str, typer.Option(help="ptb or aiogram")] = "ptb",
    players: int = 50,
    steps: Annotated[int, typer.Option(help="interactions per player")] = 20,
    postgres_url: Annotated[str | None, typer.Option(help="run on a throwaway database of this server instead "
                                                          "of SQLite")] = None,
    think_ms: Annotated[int, typer.Option(help="mean pause before each action in the first run; 0 (the default) "
                                               "saturates")] = 0,
    workers: Annotated[int, typer.Option(help="game bot processes (webhook workers); over 1 needs Redis")] = 1,
    redis_url: Annotated[str, typer.Option(help="Redis for the workers' chat locks (this database is flushed)")
                         ] = "redis://127.0.0.1:6379/9",
    half_load: Annotated[bool, typer.Option(help="then each bot alone at half its measured capacity")] = True,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Bot CPU per interaction (game and echo), capacity, and latency saturated and at half capacity."""
    from bots.app import FRAMEWORKS
    from offline.bench.bots import bench_bots

    if framework not in FRAMEWORKS:
        raise typer.BadParameter(f"choose one of {', '.join(FRAMEWORKS)}", param_hint="--framework")
    print_result(bench_bots(framework, players, steps, postgres_url, think_ms, workers, redis_url, half_load),
                 as_json)


@bench_app.command("ux")
def bench_ux_command(
    framework: Annotated[str, typer.Option(help="ptb or aiogram")] = "ptb",
    languages: Annotated[str, typer.Option(help="one language per player, comma-separated")] = "en,en,zh",
    labels: Annotated[int, typer.Option(help="labeler rounds per player")] = 6,
    retrievals: Annotated[int, typer.Option(help="retrievals per player")] = 6,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Messages a player receives per task, counted from the sandbox transcript of a fixed script."""
    from bots.app import FRAMEWORKS
    from offline.bench.ux import bench_ux

    if framework not in FRAMEWORKS:
        raise typer.BadParameter(f"choose one of {', '.join(FRAMEWORKS)}", param_hint="--framework")
    chosen = tuple(check_language(language.strip()) for language in languages.split(","))
    print_result(bench_ux(framework, chosen, labels, retrievals), as_json)


@bench_app.command("export")
def bench_export_command(queries: int = 1_000_000, postgres_url: Annotated[str | None, typer.Option(
        help="build the database on a throwaway database of this server instead of SQLite")] = None,
                         as_json: bool = typer.Option(False, "--json")) -> None:
    """Seconds and peak memory of a full research export of a database with N queries."""
    from offline.bench.suite import bench_export

    print_result(bench_export(queries=queries, postgres_admin_url=postgres_url), as_json)


@bench_app.command("inline")
def bench_inline_command(stickers: int = 100_000, queries: int = 1000,
                         as_json: bool = typer.Option(False, "--json")) -> None:
    """Milliseconds to answer an inline query (ranking, file ids, the answer built), without the network."""
    from offline.bench.inline import bench_inline

    print_result(bench_inline(stickers=stickers, n_queries=queries), as_json)
