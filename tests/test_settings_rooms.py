"""Settings by room: every variable keeps its name (STICKTIONARY_ and the field's name) and lands in the
room the README's "Where to change what" says, from the environment and from `.env` alike."""

# settings_rooms: leave this file (it gives a flat name on purpose, to see it refused)

import re

import pytest
from pydantic import SecretStr

from jobs.tasks import JOBS
from storage.settings import (
    BotConfig,
    JobSettings,
    Settings,
    SettingsProblem,
    every_setting,
    load_settings,
    room_of,
)
from tests.conftest import ROOT

# Every variable, its room and field, a value to give it (not the default) and what it reads as.
VARIABLES = {
    "STICKTIONARY_POINTS_BY_RANK": ("rules", "points_by_rank", "[5, 4, 2]", (5, 4, 2)),
    "STICKTIONARY_RESONANCE_BONUS": ("rules", "resonance_bonus", "2", 2),
    "STICKTIONARY_RESONANCE_RETRIEVERS": ("rules", "resonance_retrievers", "3", 3),
    "STICKTIONARY_CANDIDATES": ("rules", "candidates", "6", 6),
    "STICKTIONARY_RANDOM_DISTRACTORS": ("rules", "random_distractors", "1", 1),
    "STICKTIONARY_PREVIEW_HITS": ("rules", "preview_hits", "4", 4),
    "STICKTIONARY_MAX_PICKS": ("rules", "max_picks", "2", 2),
    "STICKTIONARY_MAX_QUERIES_PER_ROUND": ("rules", "max_queries_per_round", "7", 7),
    "STICKTIONARY_MAX_QUERY_CHARS": ("rules", "max_query_chars", "40", 40),
    "STICKTIONARY_RETRIEVALS_PER_ROUND": ("rules", "retrievals_per_round", "3", 3),
    "STICKTIONARY_GOLD_RATE": ("rules", "gold_rate", "0.3", 0.3),
    "STICKTIONARY_GOLD_FLAG_FAILURES": ("rules", "gold_flag_failures", "5", 5),
    "STICKTIONARY_GOLD_FLAG_ACCURACY": ("rules", "gold_flag_accuracy", "0.7", 0.7),
    "STICKTIONARY_SESSION_GAP_MINUTES": ("rules", "session_gap_minutes", "45", 45),
    "STICKTIONARY_SESSION_MIN_TASKS": ("rules", "session_min_tasks", "4", 4),
    "STICKTIONARY_TASK_EXPIRY_MINUTES": ("rules", "task_expiry_minutes", "90", 90),
    "STICKTIONARY_MIN_CONTEXT_WORDS": ("rules", "min_context_words", "12", 12),
    "STICKTIONARY_LEADERBOARD_SIZE": ("rules", "leaderboard_size", "20", 20),
    "STICKTIONARY_PRIZE_PERIOD": ("rules", "prize_period", "month", "month"),
    "STICKTIONARY_PRIZE_TOP_N": ("rules", "prize_top_n", "5", 5),
    "STICKTIONARY_GROUP_ROUND_SECONDS": ("rules", "group_round_seconds", "90", 90.0),
    "STICKTIONARY_GROUP_PACE_SECONDS": ("rules", "group_pace_seconds", "30", 30.0),
    "STICKTIONARY_PARTNER_AFTER": ("rules", "partner_after", "30", 30.0),
    "STICKTIONARY_PARTNER_POLL_SECONDS": ("rules", "partner_poll_seconds", "5", 5.0),
    "STICKTIONARY_PARTNER_MODEL": ("rules", "partner_model", "dense", "dense"),
    "STICKTIONARY_PARTNER_POINTS": ("rules", "partner_points", "2", 2),
    "STICKTIONARY_BOTS": ("telegram", "bots", '[{"token": "123:abc", "framework": "aiogram", "languages": ["zh"]}]',
                          [BotConfig(token="123:abc", framework="aiogram", languages=["zh"])]),
    "STICKTIONARY_MODERATORS": ("telegram", "moderators", "11,22", [11, 22]),
    "STICKTIONARY_TELEGRAM_API": ("telegram", "telegram_api", "http://127.0.0.1:9", "http://127.0.0.1:9"),
    "STICKTIONARY_WEBHOOK_URL": ("telegram", "webhook_url", "https://bots.example.org", "https://bots.example.org"),
    "STICKTIONARY_WEBHOOK_SECRET": ("telegram", "webhook_secret", "hook-secret", SecretStr("hook-secret")),
    "STICKTIONARY_WEBHOOK_LISTEN": ("telegram", "webhook_listen", "127.0.0.1:8444", "127.0.0.1:8444"),
    "STICKTIONARY_MEDIA_CACHE": ("telegram", "media_cache", "var/elsewhere", ROOT / "var/elsewhere"),
    "STICKTIONARY_MODERATOR_BOT": ("telegram", "moderator_bot", "main", "main"),
    "STICKTIONARY_GAME_THREADS": ("telegram", "game_threads", "3", 3),
    "STICKTIONARY_REDIS_URL": ("telegram", "redis_url", "redis://127.0.0.1:6379/3", "redis://127.0.0.1:6379/3"),
    "STICKTIONARY_FILE_CHAT": ("telegram", "file_chat", "-1001234", -1001234),
    "STICKTIONARY_INLINE_CACHE_SECONDS": ("telegram", "inline_cache_seconds", "60", 60),
    "STICKTIONARY_OUTBOX_LEASE_SECONDS": ("delivery", "outbox_lease_seconds", "30", 30.0),
    "STICKTIONARY_SEND_ATTEMPTS": ("delivery", "send_attempts", "5", 5),
    "STICKTIONARY_OUTBOX_MAX_ATTEMPTS": ("delivery", "outbox_max_attempts", "4", 4),
    "STICKTIONARY_REPLY_MAX_AGE_SECONDS": ("delivery", "reply_max_age_seconds", "600", 600.0),
    "STICKTIONARY_JOBS_TIMEZONE": ("jobs", "jobs_timezone", "Asia/Shanghai", "Asia/Shanghai"),
    "STICKTIONARY_JOBS_IN_BOT_PROCESS": ("jobs", "jobs_in_bot_process", "true", True),
    "STICKTIONARY_SCHEDULE_LEADERBOARD_DAILY": ("jobs", "schedule_leaderboard_daily", "1 2 * * *", "1 2 * * *"),
    "STICKTIONARY_SCHEDULE_LEADERBOARD_WEEKLY": ("jobs", "schedule_leaderboard_weekly", "1 2 * * mon", "1 2 * * mon"),
    "STICKTIONARY_SCHEDULE_PRIZES": ("jobs", "schedule_prizes", "2 3 * * *", "2 3 * * *"),
    "STICKTIONARY_SCHEDULE_EXPORT": ("jobs", "schedule_export", "3 4 * * *", "3 4 * * *"),
    "STICKTIONARY_SCHEDULE_EXPIRY": ("jobs", "schedule_expiry", "*/5 * * * *", "*/5 * * * *"),
    "STICKTIONARY_SCHEDULE_EXPORT_RETENTION": ("jobs", "schedule_export_retention", "4 5 * * *", "4 5 * * *"),
    "STICKTIONARY_SCHEDULE_RETENTION": ("jobs", "schedule_retention", "5 6 * * *", "5 6 * * *"),
    "STICKTIONARY_SCHEDULE_PARTNERS": ("jobs", "schedule_partners", "*/2 * * * *", "*/2 * * * *"),
    "STICKTIONARY_LEADERBOARD_CHATS": ("jobs", "leaderboard_chats", '{"zh": [-100]}', {"zh": [-100]}),
    "STICKTIONARY_EXPORT_DIR": ("exports", "export_dir", "var/other-exports", ROOT / "var/other-exports"),
    "STICKTIONARY_EXPORT_KEEP": ("exports", "export_keep", "3", 3),
    "STICKTIONARY_EXPORT_SIMILARITY_STICKERS": ("exports", "export_similarity_stickers", "10", 10),
    "STICKTIONARY_EXPORT_EVAL_QUERIES": ("exports", "export_eval_queries", "100", 100),
    "STICKTIONARY_EXPORT_WITHOUT_SEEDS": ("exports", "export_without_seeds", "true", True),
    "STICKTIONARY_EXPORT_SEMANTIC": ("exports", "export_semantic", "false", False),
    "STICKTIONARY_SEMANTIC_MODEL_EN": ("exports", "semantic_model_en", "/models/en", "/models/en"),
    "STICKTIONARY_SEMANTIC_MODEL_ZH": ("exports", "semantic_model_zh", "/models/zh", "/models/zh"),
    "STICKTIONARY_PULL_TOKENS": ("exports", "pull_tokens", "one,two", [SecretStr("one"), SecretStr("two")]),
    "STICKTIONARY_PULL_LISTEN": ("exports", "pull_listen", "127.0.0.1:8081", "127.0.0.1:8081"),
    "STICKTIONARY_INLINE_FEEDBACK_SAMPLING": ("exports", "inline_feedback_sampling", "100", 100),
    "STICKTIONARY_PSEUDONYM_KEY": ("privacy", "pseudonym_key", "a-long-secret", "a-long-secret"),
    "STICKTIONARY_EXPORT_TIME_RESOLUTION": ("privacy", "export_time_resolution", "minute", "minute"),
    "STICKTIONARY_EXPORT_ORIGINAL_TEXT": ("privacy", "export_original_text", "true", True),
    "STICKTIONARY_DATABASE_URL": ("storage", "database_url", "sqlite:///var/x.sqlite3", "sqlite:///var/x.sqlite3"),
    "STICKTIONARY_STICKER_ROOT": ("storage", "sticker_root", "var/other-stickers", ROOT / "var/other-stickers"),
    "STICKTIONARY_RETENTION_INBOX_DAYS": ("storage", "retention_inbox_days", "3", 3.0),
    "STICKTIONARY_RETENTION_OUTBOX_SENT_DAYS": ("storage", "retention_outbox_sent_days", "40", 40.0),
    "STICKTIONARY_RETENTION_SEARCH_LOG_DAYS": ("storage", "retention_search_log_days", "2", 2.0),
    "STICKTIONARY_HEALTH_LISTEN": ("health", "health_listen", "127.0.0.1:9091", "127.0.0.1:9091"),
    "STICKTIONARY_LOG_FORMAT": ("health", "log_format", "json", "json"),
}


def _read(settings: Settings, room: str, field: str):
    value = getattr(getattr(settings, room), field)
    if isinstance(value, list) and value and isinstance(value[0], SecretStr):
        return [v.get_secret_value() for v in value]
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value


def _expected(value):
    if isinstance(value, list) and value and isinstance(value[0], SecretStr):
        return [v.get_secret_value() for v in value]
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value


@pytest.fixture
def clean_environment(monkeypatch, tmp_path):
    """No STICKTIONARY_ variable of the machine, and a working folder whose relative paths are known."""
    for name in every_setting():
        monkeypatch.delenv(f"STICKTIONARY_{name.upper()}", raising=False)
    monkeypatch.chdir(ROOT)


def test_the_list_above_is_every_setting():
    assert {f"STICKTIONARY_{name.upper()}" for name in every_setting()} == set(VARIABLES)
    assert sum(len(field.annotation.model_fields) for field in Settings.model_fields.values()) == len(VARIABLES), \
        "two rooms hold a field of the same name"


@pytest.mark.parametrize("variable", sorted(VARIABLES))
def test_each_variable_keeps_its_name_and_lands_in_its_room(variable, clean_environment, monkeypatch):
    room, field, text, expected = VARIABLES[variable]
    monkeypatch.setenv(variable, text)
    settings = load_settings(_env_file=None)
    got = _read(settings, room, field)
    if isinstance(expected, type(ROOT)):
        got = ROOT / got
    if field == "outbox_max_attempts":  # the other name of the one budget: both read 4
        assert settings.delivery.send_attempts == expected
    assert got == _expected(expected)
    assert room_of()[field] == room


def test_a_dotenv_file_is_read_by_every_room(clean_environment, tmp_path):
    chosen = ["STICKTIONARY_POINTS_BY_RANK", "STICKTIONARY_MODERATORS", "STICKTIONARY_REPLY_MAX_AGE_SECONDS",
              "STICKTIONARY_SCHEDULE_EXPORT", "STICKTIONARY_EXPORT_KEEP", "STICKTIONARY_PSEUDONYM_KEY",
              "STICKTIONARY_DATABASE_URL", "STICKTIONARY_LOG_FORMAT"]
    dotenv = tmp_path / ".env"
    dotenv.write_text("".join(f"{name}={VARIABLES[name][2]}\n" for name in chosen) + "OTHER_PROGRAM=1\n")
    settings = Settings(_env_file=dotenv)
    assert {VARIABLES[name][0] for name in chosen} == set(Settings.model_fields), "one variable per room"
    for name in chosen:
        room, field, _, expected = VARIABLES[name]
        assert _read(settings, room, field) == _expected(expected), name


def test_the_environment_wins_over_dotenv(clean_environment, tmp_path, monkeypatch):
    dotenv = tmp_path / ".env"
    dotenv.write_text("STICKTIONARY_GOLD_RATE=0.4\nSTICKTIONARY_EXPORT_KEEP=5\n")
    monkeypatch.setenv("STICKTIONARY_GOLD_RATE", "0.6")
    settings = Settings(_env_file=dotenv)
    assert (settings.rules.gold_rate, settings.exports.export_keep) == (0.6, 5)


@pytest.mark.parametrize(("given", "budget"), [
    ({"STICKTIONARY_OUTBOX_MAX_ATTEMPTS": "3"}, 3),
    ({"STICKTIONARY_SEND_ATTEMPTS": "6"}, 6),
    ({"STICKTIONARY_SEND_ATTEMPTS": "6", "STICKTIONARY_OUTBOX_MAX_ATTEMPTS": "3"}, 6),
    ({}, 8),
])
def test_one_attempt_budget_under_either_name(given, budget, clean_environment, monkeypatch):
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    delivery = load_settings(_env_file=None).delivery
    assert (delivery.send_attempts, delivery.outbox_max_attempts) == (budget, budget)


def test_values_given_by_room_win_and_the_rest_is_read(clean_environment, monkeypatch):
    monkeypatch.setenv("STICKTIONARY_GOLD_RATE", "0.5")
    monkeypatch.setenv("STICKTIONARY_CANDIDATES", "6")
    settings = Settings(rules={"gold_rate": 0.0}, storage={"database_url": "sqlite://"}, _env_file=None)
    assert (settings.rules.gold_rate, settings.rules.candidates, settings.storage.database_url) == (0.0, 6, "sqlite://")
    changed = settings.replace(rules={"candidates": 9}, exports={"export_keep": 2})
    assert (changed.rules.candidates, changed.rules.gold_rate, changed.exports.export_keep) == (9, 0.0, 2)
    assert (settings.rules.candidates, settings.exports.export_keep) == (6, 14), "replace leaves the original alone"


def test_a_flat_value_is_refused_with_its_room():
    with pytest.raises(TypeError, match=r"storage=\{'database_url': …\}.*no_such_thing \(no such setting\)"):
        Settings(database_url="sqlite://", no_such_thing=1, _env_file=None)


def test_a_wrong_value_is_named_by_its_variable_whatever_its_room(clean_environment, monkeypatch):
    monkeypatch.setenv("STICKTIONARY_REPLY_MAX_AGE_SECONDS", "-1")
    monkeypatch.setenv("STICKTIONARY_LEADERBOARD_CHATS", "{not json")
    with pytest.raises(SettingsProblem) as problem:
        load_settings(_env_file=None)
    message = str(problem.value)
    assert message.startswith("STICKTIONARY_") and "(and 1 more)" in message
    assert "{not json" not in message  # never the value: it may be a secret


def test_rooms_are_where_the_readme_says():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    where = readme[readme.index("## Where to change what"):readme.index("## Commands")]
    rows = re.findall(r"^\| `settings\.(\w+)` \| `(\w+)` \| [^|]+ \| (.+) \|$", where, re.M)
    assert [room for room, _, _ in rows] == list(Settings.model_fields), "one row per room, in order"
    for room, section, variables in rows:
        assert Settings.model_fields[room].annotation.__name__ == section
        listed = re.findall(r"`(\w+)`", variables)
        assert [f"STICKTIONARY_{name}" for name in listed] == [
            f"STICKTIONARY_{field.upper()}" for field in Settings.model_fields[room].annotation.model_fields], room
    # The rows naming one setting name its room too.
    for field, room in re.findall(r"the `(\w+)` setting \(`settings\.(\w+)`", where):
        assert room_of()[field] == room, field


def test_every_job_schedule_is_a_jobs_setting():
    assert {spec.schedule_setting for spec in JOBS.values()} <= set(JobSettings.model_fields)


def test_a_copy_changes_fields_only_by_their_room():
    settings = Settings(_env_file=None)
    assert settings.replace(rules={"gold_rate": 0.5}).rules.gold_rate == 0.5
    with pytest.raises(TypeError, match="gold_rate"):
        settings.model_copy(update={"gold_rate": 0.5})  # the flat form would be set where nothing reads it
    with pytest.raises(TypeError, match="export_keep"):
        settings.replace(rules={"export_keep": 2})  # a field of another room
    with pytest.raises(TypeError, match="nowhere"):
        settings.replace(nowhere={"x": 1})
