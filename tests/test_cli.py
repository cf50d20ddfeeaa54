"""The command line, run as a user runs it, on a real SQLite file."""

import json
import logging

import pytest
from typer.testing import CliRunner

from sticktionary.cli import app
from tests.conftest import REAL_SAMPLES, TEST_PSEUDONYM_KEY

runner = CliRunner()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("STICKTIONARY_DATABASE_URL", f"sqlite:///{tmp_path}/cli.sqlite3")
    from storage.settings import get_settings

    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.mark.parametrize("command", [[], ["db"], ["data"], ["bench"], ["data", "import-usticker"], ["demo"], ["jobs"],
                                     ["jobs", "start"], ["export"], ["export", "pull"], ["report"], ["outbox"],
                                     ["outbox", "retry"], ["outbox", "purge"]])
def test_help_everywhere(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def _command_paths(group, path=()):
    for name, command in group.commands.items():
        yield (*path, name)
        if hasattr(command, "commands"):
            yield from _command_paths(command, (*path, name))


def test_help_shows_flags_without_a_value():
    """A flag reads as a flag (`--json`), not as an option taking a value (`--json <bool>`)."""
    import typer

    paths = [(), *_command_paths(typer.main.get_command(app))]
    assert ("bench", "import") in paths and ("outbox", "retry") in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, (path, result.output)
        assert "--help" in result.output


def test_db_upgrade_and_query_round_trip(env):
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    source = REAL_SAMPLES / "sticker_queries_zh_release.first200.csv"
    result = runner.invoke(app, ["data", "import-queries", str(source), "--lang", "zh"])
    assert result.exit_code == 0, result.output
    out = env / "zh.csv"
    result = runner.invoke(app, ["data", "export-queries", "--lang", "zh", "--out", str(out)])
    assert result.exit_code == 0 and out.read_bytes() == source.read_bytes()


def test_wrong_language_and_wrong_file_get_clear_errors(env):
    result = runner.invoke(app, ["data", "export-queries", "--lang", "fr", "--out", str(env / "x.csv")])
    assert result.exit_code != 0 and "en or zh" in result.output
    bad = env / "bad.csv"
    bad.write_text("a,b\n", encoding="utf-8")
    result = runner.invoke(app, ["data", "import-queries", str(bad), "--lang", "en"])
    assert result.exit_code == 2 and "not a StickerQueries file" in result.output


def test_import_usticker_prints_what_each_rule_removed(env):
    from offline.demo_pack import PACK_DIR

    result = runner.invoke(app, ["data", "import-usticker", str(PACK_DIR)])
    assert result.exit_code == 0, result.output
    for rule in ("too_little_dialogue", "command_driven", "brief_replies", "other_language", "duplicate_sticker"):
        assert rule in result.output


def test_synth_writes_usticker_format(env):
    result = runner.invoke(app, ["data", "synth", str(env / "syn"), "--messages", "2000", "--stickers", "50"])
    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if '{"files"' in line)  # after the progress bar
    assert json.loads(line[line.index("{"):])["messages"] == 2000


@pytest.mark.parametrize("mode", [["--engine-only"], []])
def test_demo_plays_end_to_end(env, mode, caplog):
    caplog.set_level(logging.DEBUG)  # every record of every logger, at any level, is captured
    result = runner.invoke(app, ["demo", "--workdir", str(env / "demo"), "--players", "2", "--turns", "3", *mode])
    assert result.exit_code == 0, result.output
    assert "leaderboard (en)" in result.output and "leaderboard (zh)" in result.output
    assert (env / "demo" / "exports" / "latest" / "sticker_queries_zh_release.csv").exists()
    assert (env / "demo" / "exports" / "latest" / "metrics.json").exists() and "research export" in result.output
    assert "play it yourself, in the browser: sticktionary play" in result.output  # where to go next
    if not mode:
        assert "python-telegram-bot" in result.output and "rate-limited: 0" in result.output
        # No bot token in any log line: the HTTP clients do not log requests, and the filter is a safety net.
        assert len(caplog.records) > 10
        logged = caplog.text + "\n".join(record.getMessage() for record in caplog.records)
        for token in ("1001:demo-en", "1002:demo-zh", "demo-en", "demo-zh"):
            assert token not in logged and token not in result.output
        assert not [r for r in caplog.records if r.name.split(".")[0] in ("httpx", "httpcore")
                    and r.levelno < logging.WARNING]


def test_run_refuses_to_start_without_bots(tmp_path, monkeypatch):
    monkeypatch.setenv("STICKTIONARY_DATABASE_URL", f"sqlite:///{tmp_path}/x.sqlite3")
    monkeypatch.delenv("STICKTIONARY_BOTS", raising=False)
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 2 and "STICKTIONARY_BOTS" in result.output
    monkeypatch.setenv("STICKTIONARY_BOTS", '[{"token": "1:x", "framework": "telethon"}]')
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 2 and "not valid" in result.output


def test_run_with_several_workers_needs_webhooks_and_redis(tmp_path, monkeypatch):
    monkeypatch.setenv("STICKTIONARY_DATABASE_URL", f"sqlite:///{tmp_path}/x.sqlite3")
    monkeypatch.setenv("STICKTIONARY_BOTS", '[{"token": "1:x", "framework": "ptb"}]')
    for name in ("STICKTIONARY_WEBHOOK_URL", "STICKTIONARY_WEBHOOK_SECRET", "STICKTIONARY_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(app, ["run", "--workers", "3"])
    assert result.exit_code == 2 and "STICKTIONARY_WEBHOOK_URL" in result.output
    monkeypatch.setenv("STICKTIONARY_WEBHOOK_URL", "https://bots.example.org")
    monkeypatch.setenv("STICKTIONARY_WEBHOOK_SECRET", "s")
    result = runner.invoke(app, ["run", "--workers", "3"])
    assert result.exit_code == 2 and "STICKTIONARY_REDIS_URL" in result.output
    assert runner.invoke(app, ["run", "--workers", "0"]).exit_code == 2


def test_report_on_the_real_samples():
    files = [REAL_SAMPLES / f"sticker_queries_{lang}_release.first200.csv" for lang in ("en", "zh")]
    result = runner.invoke(app, ["report", *map(str, files), "--json", "--no-semantic"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    en, zh = (report[str(f)] for f in files)
    assert (en["language"], zh["language"]) == ("en", "zh")
    assert en["statistics"]["stickers"] == 200 and en["statistics"]["queries"] == 1598
    assert zh["statistics"]["stickers"] == 200
    assert 0 < en["bm25_retrieval"]["recall@1"] <= en["bm25_retrieval"]["recall@10"] <= en["bm25_retrieval"]["recall@50"]
    assert en["lexical_similarity"]["bleu"] > 0 and zh["lexical_similarity"]["rouge_l_f1"] > 0
    # The paper's scale: NLTK BLEU and best-match ROUGE-L on 0-1 (the 0.0751 / 0.261-0.269 for
    # whitespace tokens; ours are lower-cased words without punctuation).
    assert 0.06 < en["lexical_similarity"]["bleu"] < 0.09 and 0.24 < en["lexical_similarity"]["rouge_l_f1"] < 0.28
    assert en["lexical_similarity"]["sacrebleu_bleu"] > 1  # the earlier variant, 0-100
    assert 0 < en["bm25_retrieval"]["mrr@10"] <= en["bm25_retrieval"]["ndcg@10"] <= en["bm25_retrieval"]["recall@10_trec"]
    # Table 4 on every sticker with 2+ queries by default (every en sticker of the sample has some); --sample N.
    assert en["lexical_similarity"]["stickers_compared"] == 200 and en["lexical_similarity"]["queries_compared"] == 1598
    assert en["lexical_similarity"]["pair_kinds"]["authors_unknown"] == en["lexical_similarity"]["pairs_compared"]
    quick = runner.invoke(app, ["report", str(files[0]), "--json", "--no-semantic", "--sample", "50"])
    assert quick.exit_code == 0, quick.output
    assert json.loads(quick.output)[str(files[0])]["lexical_similarity"]["stickers_compared"] == 50
    printed = runner.invoke(app, ["report", str(files[1]), "--no-semantic"])
    assert printed.exit_code == 0 and "(zh)" in printed.output
    for figure in ("bleu ", "rouge_l_f1 ", "sacrebleu_bleu", "rouge_l_f1_pairwise", "recall@1 ", "recall@1_trec",
                   "ndcg@10", "mrr@10"):
        line = next(line for line in printed.output.splitlines() if line.strip().startswith(figure.strip() + " "))
        assert " scale 0-1" in line or " scale 0-100" in line, line


def test_export_now_refuses_the_default_pseudonym_key(env, monkeypatch):
    monkeypatch.delenv("STICKTIONARY_PSEUDONYM_KEY", raising=False)
    monkeypatch.setenv("STICKTIONARY_EXPORT_DIR", str(env / "exports"))
    result = runner.invoke(app, ["export", "now", "--no-progress"])
    assert result.exit_code == 2 and "STICKTIONARY_PSEUDONYM_KEY" in result.output and "secrets" in result.output
    assert not (env / "exports").exists()


def test_report_refuses_a_file_that_is_not_sticker_queries(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    result = runner.invoke(app, ["report", str(bad)])
    assert result.exit_code == 2 and "sticker_id,labeled_queries" in result.output


def test_env_example_lists_every_setting():
    from storage.settings import every_setting
    from tests.conftest import ROOT

    listed = {line.split("=", 1)[0].lstrip("# ").strip() for line in (ROOT / ".env.example").read_text().splitlines()
              if "=" in line and line.lstrip("# ").startswith("STICKTIONARY_")}
    expected = {f"STICKTIONARY_{name.upper()}" for name in every_setting()}
    assert expected <= listed, sorted(expected - listed)


def test_export_now_and_list(env, monkeypatch):
    export_dir = env / "exports"
    monkeypatch.setenv("STICKTIONARY_EXPORT_DIR", str(export_dir))
    monkeypatch.setenv("STICKTIONARY_PSEUDONYM_KEY", TEST_PSEUDONYM_KEY)
    monkeypatch.setenv("STICKTIONARY_EXPORT_SEMANTIC", "false")
    result = runner.invoke(app, ["export", "now", "--no-progress", "--without-seeds"])
    assert result.exit_code == 0, result.output
    version = json.loads(result.output.strip().splitlines()[-1])["version"]
    assert (export_dir / version / "manifest.json").exists()
    listing = runner.invoke(app, ["export", "list"])
    assert version in listing.output and "(latest)" in listing.output


def test_jobs_can_run_inside_the_bot_process(env):
    from jobs.tasks import JOBS
    from sticktionary.cli import _start_background_jobs
    from storage.settings import Settings

    scheduler = _start_background_jobs(Settings(storage={"database_url": f"sqlite:///{env}/cli.sqlite3"}, _env_file=None))
    try:
        assert scheduler.running and {job.id for job in scheduler.get_jobs()} == {*JOBS, "retry-unfinished"}
        assert all(job.next_run_time is not None for job in scheduler.get_jobs())
    finally:
        scheduler.shutdown(wait=False)


def test_jobs_list_and_a_bad_schedule(env, monkeypatch):
    result = runner.invoke(app, ["jobs", "list"])
    assert result.exit_code == 0 and "export" in result.output and "next" in result.output
    monkeypatch.setenv("STICKTIONARY_SCHEDULE_PRIZES", "0 0 * * 1")
    from storage.settings import get_settings

    get_settings.cache_clear()
    result = runner.invoke(app, ["jobs", "list"])
    assert result.exit_code == 2 and "weekdays as names" in result.output


CPU_FIGURES = ("game_cpu_ms_per_interaction", "echo_cpu_ms_per_interaction", "harness_cpu_ms_per_interaction",
               "capacity_ratio")
HALF_LOAD_FIGURES = ("capacity_per_s", "echo_capacity_per_s", "half_load_offered_per_s", "half_load_interval_ms",
                     "half_load_interactions_per_s", "half_load_load", "half_load_p50_ms", "half_load_p99_ms",
                     "half_load_cpu_ms_per_interaction", "echo_half_load_offered_per_s",
                     "echo_half_load_interval_ms", "echo_half_load_interactions_per_s", "echo_half_load_load",
                     "echo_half_load_p50_ms", "echo_half_load_p99_ms", "echo_half_load_cpu_ms_per_interaction")


@pytest.mark.parametrize("framework", ["ptb", "aiogram"])
def test_bench_bots_measures_through_three_processes(env, framework):
    """A small run of the real benchmark: sandbox, bots and players each in their own process; the
    saturated run, then the game and the echo bot each at half the capacity its CPU figures give."""
    result = runner.invoke(app, ["bench", "bots", "--players", "2", "--steps", "3",
                                 "--framework", framework, "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert {"framework", "players", "interactions", "interactions_per_s", "p50_ms", "p99_ms",
            "echo_interactions_per_s", "echo_p50_ms", "throughput_ratio", "cores", "half_load_think_ms",
            "half_load_machine_busy", "half_load_others_busy", *CPU_FIGURES, *HALF_LOAD_FIGURES} <= figures.keys()
    assert figures["framework"] == framework and figures["database"] == "sqlite" and figures["think_ms"] == 0
    assert figures["interactions"] >= 2 * 3  # a retriever's turn may take a pick and Done in one step
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] and figures["echo_interactions_per_s"] > 0
    # CPU times tick in 10 ms steps: at this size a bot's CPU per interaction can measure 0 (and so
    # the ratio built on it); every other figure must be there and positive.
    measured_cpu = [key for key in (*CPU_FIGURES, *HALF_LOAD_FIGURES) if "cpu_ms" in key or key == "capacity_ratio"]
    assert all(figures[key] >= 0 for key in measured_cpu), figures
    assert all(figures[key] > 0 for key in (*CPU_FIGURES, *HALF_LOAD_FIGURES) if key not in measured_cpu), figures
    assert figures["half_load_p50_ms"] <= figures["half_load_p99_ms"]
    assert figures["echo_half_load_p50_ms"] <= figures["echo_half_load_p99_ms"]
    # capacity_ratio is the quotient of the CPU figures, and the half load is half the capacity.
    assert figures["capacity_ratio"] == pytest.approx(
        figures["echo_cpu_ms_per_interaction"] / figures["game_cpu_ms_per_interaction"], rel=0.02, abs=0.002)
    assert figures["half_load_offered_per_s"] == pytest.approx(figures["capacity_per_s"] / 2, abs=0.1)
    assert figures["half_load_interval_ms"] == pytest.approx(
        2 / figures["half_load_offered_per_s"] * 1000, rel=0.05)


def test_bench_bots_with_two_workers_on_postgresql(env, postgres_url):
    """Two webhook workers sharing chat order through Redis, the echo bot playing in the same window."""
    import os

    import redis

    from tests.conftest import POSTGRES_ADMIN

    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/9").ping()
    except redis.ConnectionError:
        if os.environ.get("CI"):
            raise
        pytest.skip("no Redis on 127.0.0.1:6379")
    result = runner.invoke(app, ["bench", "bots", "--players", "2", "--steps", "3", "--think-ms", "0",
                                 "--workers", "2", "--postgres-url", POSTGRES_ADMIN, "--no-half-load", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["workers"] == 2 and figures["database"] == "postgresql" and figures["interleaved"]
    assert figures["interactions"] >= 2 * 3
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] and figures["echo_interactions_per_s"] > 0
    assert all(figures[key] > 0 for key in CPU_FIGURES), figures  # both workers' CPU counts
    assert "half_load_p50_ms" not in figures


def test_bench_bots_refuses_an_unknown_framework():
    result = runner.invoke(app, ["bench", "bots", "--framework", "telethon"])
    assert result.exit_code != 0 and "ptb" in result.output


def test_outbox_lists_retries_and_purges(env):
    from datetime import timedelta

    from sqlmodel import select

    from core.outbox import Outbox, Route
    from storage.db import Database, make_engine, session_scope
    from storage.migrate import upgrade
    from storage.models import Player, utcnow

    engine = make_engine(f"sqlite:///{env}/cli.sqlite3")
    upgrade(engine)
    outbox = Outbox(Database(engine))
    with session_scope(engine) as session:
        for key in ("refused", "sent-long-ago", "waiting"):
            outbox.enqueue(session, key, "leaderboard", {}, chat_id=-100)
    refused, sent, waiting = outbox.claim(Route("bot", moderator_bot=True), "me", 3)
    outbox.dead_letter(refused.id, "me", "chat -100: refused: Chat not found")
    outbox.mark_sent(sent.id, "me")
    outbox.release([waiting.id], "me")
    listing = runner.invoke(app, ["outbox"])
    assert listing.exit_code == 0, listing.output
    lines = listing.output.splitlines()
    assert lines[0] == "pending 1  sending 0  held 0  sent 1  dead 1"
    assert f"#{refused.id:<7} dead" in lines[1] and "chat -100" in lines[1] and lines[2].strip() == \
        "chat -100: refused: Chat not found"
    assert f"#{waiting.id:<7} pending" in lines[3] and "attempts 0" in lines[3]
    assert runner.invoke(app, ["outbox", "list", "--status", "nonsense"]).exit_code == 2
    assert runner.invoke(app, ["outbox", "retry"]).exit_code == 2  # says which, rather than retrying all
    result = runner.invoke(app, ["outbox", "retry", str(refused.id), str(waiting.id)])
    assert result.exit_code == 0 and "1 dead letters back in the queue" in result.output
    assert "1 of the ids given are not dead letters" in result.output
    assert runner.invoke(app, ["outbox", "list", "--status", "dead"]).output.splitlines()[1:] == []
    assert runner.invoke(app, ["outbox", "retry", "--all"]).output.startswith("0 dead letters")
    assert runner.invoke(app, ["outbox", "purge", "--sent-before", "yesterday"]).exit_code == 2
    tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
    assert runner.invoke(app, ["outbox", "purge", "--sent-before", tomorrow]).output == "1 sent messages deleted\n"
    assert outbox.counts() == {"pending": 2, "sending": 0, "held": 0, "sent": 0, "dead": 0}
    with session_scope(engine) as session:
        session.add(Player(telegram_user_id=1, pseudonym="p1", bot_key="old"))
    assert runner.invoke(app, ["outbox", "reroute", "old", "new"]).output == "1 players of bot old now hear from bot new\n"
    with session_scope(engine) as session:
        assert session.exec(select(Player.bot_key)).all() == ["new"]
    engine.dispose()


def test_bench_search_with_writes_keeps_parity():
    """A small run of the real benchmark: one index write per two searches, parity checked after."""
    result = runner.invoke(app, ["bench", "search", "--stickers", "3000", "--queries", "200", "--write-every", "2",
                                 "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["parity"] is True and figures["writes"] == 100 and figures["p99_ms"] > 0


def test_bench_startup_measures_a_fresh_process():
    result = runner.invoke(app, ["bench", "startup", "--queries", "3000", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["queries"] >= 3000 and figures["seconds_to_ready"] > 0 and figures["peak_rss_mb"] > 20
    assert set(figures["stickers"]) == {"en", "zh"}
