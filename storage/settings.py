"""One settings object for every process, in sections by room, read from the environment or `.env`.

Every variable is ``STICKTIONARY_`` and a field's name, whatever its section: ``STICKTIONARY_DATABASE_URL``
sets ``settings.storage.database_url``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

# What a right value looks like, for the one-line message about a wrong one.
EXAMPLES = {
    "bots": '[{"token": "123456:ABC-your-bot-token", "framework": "ptb", "languages": ["en"]}]',
    "moderators": "12345  or  12345,67890  or  [12345, 67890]",
    "pull_tokens": "a-long-random-token  or  token-one,token-two  or  [\"token-one\"]",
    "leaderboard_chats": '{"en": [-1001234567890], "zh": []}',
    "points_by_rank": "[3, 2, 1]",
    "database_url": "postgresql+psycopg://user:password@localhost:5432/sticktionary",
    "prize_period": "week",
}

# The shortest retention that stays safe, in days (see the settings' comments for why).
RETENTION_FLOORS = {"retention_inbox_days": 1, "retention_outbox_sent_days": 32, "retention_search_log_days": 1}


class BotConfig(BaseModel):
    """One Telegram bot: its token, the framework that runs it and the languages it serves."""

    token: SecretStr
    framework: Literal["ptb", "aiogram"] = "ptb"
    languages: list[Literal["en", "zh"]] = Field(default_factory=lambda: ["en", "zh"], min_length=1)
    name: str | None = None  # a short key for logs, the file_id cache and the webhook path

    @property
    def key(self) -> str:
        """The bot's key: its name, or the numeric id its token starts with (never the secret part)."""
        return self.name or self.token.get_secret_value().split(":")[0]


class Section(BaseSettings):
    """One room of the settings. Every section reads the same flat names, ``STICKTIONARY_<FIELD>``,
    from the environment and `.env`, and ignores the other rooms' names there."""

    model_config = SettingsConfigDict(
        env_prefix="STICKTIONARY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )


class GameRules(Section):
    """The game's rules (docs/design.md, "The game"); defaults follow the paper."""

    points_by_rank: tuple[int, int, int] = (3, 2, 1)
    resonance_bonus: int = 1
    resonance_retrievers: int = 2
    candidates: int = 9
    random_distractors: int = 2
    preview_hits: int = 9
    max_picks: int = 3
    max_queries_per_round: int = 10
    max_query_chars: int = 64
    retrievals_per_round: int = 2
    gold_rate: float = 0.15
    gold_flag_failures: int = 3
    gold_flag_accuracy: float = 0.5
    session_gap_minutes: int = 30
    session_min_tasks: int = 10
    task_expiry_minutes: int = 60
    min_context_words: int = 20
    # Leaderboards and prizes: how many players a leaderboard shows, and the prize period and places.
    leaderboard_size: int = 10
    prize_period: Literal["day", "week", "month"] = "week"
    prize_top_n: int = 3
    # Group rounds (core/game/group_rounds.py): how long a round in a group stays open, and the
    # per-group pace of what the bot posts there unasked (/top, the pointer at an open round):
    # Telegram allows about 20 messages a minute in a group.
    group_round_seconds: float = Field(default=60, gt=0, le=3600)
    group_pace_seconds: float = Field(default=20, ge=0, le=3600)
    # Partners (core/game/partners.py): a model player answers a submitted round no person has taken
    # for partner_after seconds (<= 0: no partners). partner_model is "bm25" (the search index) or
    # "dense" (the semantic extra with semantic_model_en / _zh). partner_points: what the labeler
    # earns when a partner finds their sticker, once per round (0: feedback only).
    partner_after: float = 120.0
    partner_poll_seconds: float = 2.0
    partner_model: Literal["bm25", "dense"] = "bm25"
    partner_points: int = 1


class TelegramSettings(Section):
    """The bots: their tokens, how Telegram reaches them, the moderators among their users, and what a
    bot process runs on (game threads, Redis, the file_id cache)."""

    # STICKTIONARY_BOTS is JSON, e.g.
    # [{"token": "123:abc", "framework": "ptb", "languages": ["en"]},
    #  {"token": "456:def", "framework": "aiogram", "languages": ["zh"]}]
    bots: Annotated[list[BotConfig], NoDecode] = Field(default_factory=list)
    # Lists read from the environment may be one value (12345), comma-separated (1,2,3) or JSON.
    moderators: Annotated[list[int], NoDecode] = Field(default_factory=list,
                                                       description="Telegram user ids of moderators")
    telegram_api: str = "https://api.telegram.org"
    webhook_url: str | None = Field(default=None, description="public base URL; unset: long polling")
    webhook_secret: SecretStr | None = None
    webhook_listen: str = "0.0.0.0:8443"
    media_cache: Path = Path("var/media-cache")
    # The one bot (by key) that delivers outbox messages addressed to no player: moderator notices and
    # posts to chats. Unset: the first bot in STICKTIONARY_BOTS. Every process must agree on it.
    moderator_bot: str | None = None
    # Threads that run game work (database and engine) for all the bots of a process. Few is
    # faster: the work holds Python's interpreter lock, so more threads only queue on it and on
    # the database's writer lock; two keep one slow call from stalling everyone.
    game_threads: int = Field(default=2, ge=1, le=32)
    # Redis, for running several worker processes per bot: Telegram's pacing and the one-update-
    # at-a-time order of each chat are then shared by all of them. Unset: kept in each process.
    redis_url: str | None = Field(default=None, description="e.g. redis://127.0.0.1:6379/0")
    # Inline sticker search (bots/handlers/inline.py, core/game/inline_search.py). Inline results offer
    # stickers by a file_id of the answering bot: the bots upload the stickers that have none to this
    # chat (a private group or channel of the operator's, the bot a member that may post), paced at
    # Telegram's 20 a minute per group. Unset: only stickers already sent to players are offered.
    file_chat: int | None = Field(default=None, description="storage chat for sticker uploads, e.g. -1001234567890")
    # How long Telegram may cache an inline answer for everyone asking the same query (seconds).
    inline_cache_seconds: int = Field(default=300, ge=0, le=86_400)

    @field_validator("moderators", mode="before")
    @classmethod
    def _list_from_text(cls, value):
        return _list_from_text(value)

    @field_validator("bots", mode="before")
    @classmethod
    def _json_from_text(cls, value):
        return _json_from_text(value)


class DeliverySettings(Section):
    """How replies and outbox messages reach Telegram: the attempt budget, leases and how old a reply
    may get. The retry policy that spends the budget is bots/transport/policy.py."""

    # Outbox delivery: a claimed message is leased this long (a killed sender's rows are claimable
    # again after it).
    outbox_lease_seconds: float = Field(default=120, gt=0)
    # One attempt budget for everything sent to Telegram: a reply or an outbox message is tried at
    # most this many times in all (a 429 wait is no attempt), then dropped or dead-lettered with
    # its reason. STICKTIONARY_OUTBOX_MAX_ATTEMPTS is another name of the same budget; when both
    # are given, STICKTIONARY_SEND_ATTEMPTS wins.
    send_attempts: int = Field(default=8, ge=1)
    outbox_max_attempts: int | None = Field(default=None, ge=1)
    # A reply still undelivered this long after its update arrived (a long Telegram outage) is
    # dropped with one log line rather than shown to a player who has moved on.
    reply_max_age_seconds: float = Field(default=3600, gt=0)

    @model_validator(mode="after")
    def _one_attempt_budget(self):
        if self.outbox_max_attempts is not None and "send_attempts" not in self.model_fields_set:
            self.send_attempts = self.outbox_max_attempts
        self.outbox_max_attempts = self.send_attempts
        return self


class JobSettings(Section):
    """The scheduled jobs (`sticktionary jobs`, or inside `sticktionary run` with jobs_in_bot_process).
    Schedules are cron expressions in jobs_timezone: five fields, or six with seconds first."""

    jobs_timezone: str = "UTC"
    jobs_in_bot_process: bool = False
    schedule_leaderboard_daily: str = "0 20 * * *"
    schedule_leaderboard_weekly: str = "5 20 * * sun"
    schedule_prizes: str = "15 0 * * *"  # tallies the last complete prize period
    schedule_export: str = "0 3 * * *"
    schedule_expiry: str = "*/10 * * * *"
    schedule_export_retention: str = "30 3 * * *"
    schedule_retention: str = "0 4 * * *"
    schedule_partners: str = "* * * * *"  # partners answer waiting rounds (also in every bot process)
    # Where leaderboards are posted besides the players who opted in: {"en": [chat ids], "zh": [...]}
    leaderboard_chats: Annotated[dict[Literal["en", "zh"], list[int]], NoDecode] = Field(default_factory=dict)

    @field_validator("leaderboard_chats", mode="before")
    @classmethod
    def _json_from_text(cls, value):
        return _json_from_text(value)


class ExportSettings(Section):
    """The research export: where it goes, how many are kept, its metrics, and the researchers' pull."""

    export_dir: Path = Field(default=Path("var/exports"))
    export_keep: int = Field(default=14, ge=1, description="complete exports kept by the retention job")
    export_similarity_stickers: int = 1_000  # BLEU/ROUGE-L sample (stickers)
    export_eval_queries: int = 20_000  # BM25 Recall@k sample (test queries)
    export_without_seeds: bool = Field(default=False, description="leave imported seed queries out of the "
                                       "nightly export's files and metrics (`export now --without-seeds`)")
    export_semantic: bool = Field(default=True, description="compute CS and BERTScore in the export when the "
                                  "semantic extra and the models are on this machine")
    # Table 4's semantic figures: the paper's BERT-base models, by Hugging Face name (local cache only)
    # or local folder. Nothing is downloaded: pre-fetch them or point these at a folder.
    semantic_model_en: str = "bert-base-uncased"
    semantic_model_zh: str = "bert-base-chinese"
    pull_tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list,
                                                              description="bearer tokens of researchers")
    pull_listen: str = "0.0.0.0:8080"
    # What BotFather's /setinlinefeedback is set to, as N of 1/N (Telegram reports that share of the
    # chosen inline results): the dataset card states it, so researchers can scale the `inline` counts.
    inline_feedback_sampling: Literal[1, 10, 100, 1000] = 1

    @field_validator("inline_feedback_sampling", mode="before")
    @classmethod
    def _sampling_from_text(cls, value):
        # From the environment it is text, and a Literal of ints takes no text: "100" reads as 100.
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value

    def semantic_model(self, language: str) -> str:
        """The BERT model of one language's semantic figures (semantic_model_en, semantic_model_zh)."""
        return getattr(self, f"semantic_model_{language}")

    @field_validator("pull_tokens", mode="before")
    @classmethod
    def _list_from_text(cls, value):
        return _list_from_text(value)


class PrivacySettings(Section):
    """What an export may reveal about a player."""

    pseudonym_key: str = Field(
        default="change-me", description="secret for the keyed hash that makes pseudonymous ids"
    )
    export_time_resolution: Literal["hour", "minute", "second"] = Field(
        default="hour", description="exported timestamps are truncated to this (privacy: no exact activity times)")
    export_original_text: bool = Field(default=False, description="also export the player's own text of a "
                                       "query a moderator corrected (off: only the corrected text)")


class StorageSettings(Section):
    """Where the data lives, and how long the database keeps what it no longer needs."""

    database_url: str = Field(
        default="sqlite:///var/sticktionary.sqlite3",
        description="SQLAlchemy URL; a SQLite file by default, PostgreSQL as postgresql+psycopg://…",
    )
    sticker_root: Path = Field(default=Path("var/stickers"), description="where sticker files live")
    # Retention (the `retention` job, core/retention.py): rows older than this many days are deleted;
    # 0 keeps them forever. Never an unhandled update or an undelivered message, whatever the age.
    # Handled updates (done, skipped, failed): at least 1 day, since Telegram redelivers an update for
    # up to 24 hours and the stored row is what makes a redelivery a no-op.
    retention_inbox_days: float = Field(default=14, ge=0)
    # Sent messages: at least 32 days, since their dedupe keys go with them and the daily prize tally
    # tallies the last complete month again for a month (its notice to moderators must not repeat).
    retention_outbox_sent_days: float = Field(default=90, ge=0)
    # The search change log: processes keep their position in memory, so only rows older than any
    # live process can still be behind are deleted (at least 1 day; the newest row always stays).
    retention_search_log_days: float = Field(default=7, ge=0)

    @field_validator("retention_inbox_days", "retention_outbox_sent_days", "retention_search_log_days")
    @classmethod
    def _retention_floor(cls, value: float, info):
        floor = RETENTION_FLOORS[info.field_name]
        if 0 < value < floor:
            raise ValueError(f"keep at least {floor:g} days (or 0: keep forever)")
        return value


class HealthSettings(Section):
    """What operators watch: the health and metrics server, and the logs."""

    # host:port of a small HTTP server with only /healthz, /readyz and /metrics, for `run` by long
    # polling (which has no server of its own) and `jobs start`. Unset: none. With webhooks the
    # webhook server answers them too.
    health_listen: str | None = Field(default=None, description="e.g. 0.0.0.0:9090")
    # Logs of `run`, `jobs start` and `export serve`: text (one line a record) or json (one JSON object
    # a line, with the bot, update id and player where known; tokens redacted as in text).
    log_format: Literal["text", "json"] = "text"


class Settings(BaseModel):
    """Every setting of every process, by room: ``settings.rules.points_by_rank``,
    ``settings.delivery.send_attempts``. Each section reads its own fields from the environment and
    `.env`, so a variable's name is ``STICKTIONARY_`` and the field's name, whatever its room.

    ``Settings(storage={"database_url": url}, rules={"gold_rate": 0.0}, _env_file=None)`` sets some
    fields and reads the rest; options starting with ``_`` (``_env_file``) go to every section."""

    rules: GameRules
    telegram: TelegramSettings
    delivery: DeliverySettings
    jobs: JobSettings
    exports: ExportSettings
    privacy: PrivacySettings
    storage: StorageSettings
    health: HealthSettings

    def __init__(self, **values: Any) -> None:
        options = {name: value for name, value in values.items() if name.startswith("_")}
        sections, problems = {}, []
        for room, field in type(self).model_fields.items():
            given = values.pop(room, None)
            section: type[Section] = field.annotation
            try:
                sections[room] = given if isinstance(given, section) else section(**options, **(given or {}))
            except ValidationError as error:  # every room's problems, not only the first room's
                problems += error.errors()
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        stray = [name for name in values if name not in options]
        if stray:
            rooms = room_of()
            raise TypeError("settings are given by room: " + ", ".join(
                f"{rooms[name]}={{{name!r}: …}}" if name in rooms else f"{name} (no such setting)" for name in stray))
        super().__init__(**sections)

    def replace(self, **rooms: dict[str, Any]) -> Settings:
        """A copy with some fields changed, by room: ``settings.replace(exports={"export_keep": 2})``.
        Like model_copy's update, the values are not validated again."""
        known = room_of()
        for room, fields in rooms.items():
            wrong = [name for name in fields if known.get(name) != room]
            if room not in type(self).model_fields or wrong:
                raise TypeError(f"not settings of the {room} room: {', '.join(wrong) or room}")
        return super().model_copy(update={room: getattr(self, room).model_copy(update=fields)
                                          for room, fields in rooms.items()})

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Settings:
        """As pydantic's, but an update names whole rooms only: a flat field (the old form) would be set
        beside the rooms, where nothing reads it. Use `replace` to change fields."""
        stray = [name for name in update or {} if name not in type(self).model_fields]
        if stray:
            raise TypeError(f"settings are changed by room, with replace(): {', '.join(stray)}")
        return super().model_copy(update=update, deep=deep)

    def secrets(self) -> list[str]:
        """Every secret this configuration holds, for the log redaction filter."""
        found = [b.token.get_secret_value() for b in self.telegram.bots]
        found += [t.get_secret_value() for t in self.exports.pull_tokens]
        if self.telegram.webhook_secret is not None:
            found.append(self.telegram.webhook_secret.get_secret_value())
        if self.privacy.pseudonym_key != "change-me":
            found.append(self.privacy.pseudonym_key)
        return [secret for secret in found if secret]


def room_of() -> dict[str, str]:
    """Each setting's room, by field name (its variable is STICKTIONARY_ and the name in capitals)."""
    return {name: room for room, field in Settings.model_fields.items() for name in field.annotation.model_fields}


def every_setting() -> dict[str, FieldInfo]:
    """Every setting's field, by field name, whatever its room."""
    return {name: info for field in Settings.model_fields.values()
            for name, info in field.annotation.model_fields.items()}


def _list_from_text(value):
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return _json(text)
    return [part.strip() for part in text.split(",") if part.strip()]


def _json_from_text(value):
    if not isinstance(value, str):
        return value
    return _json(value.strip()) if value.strip() else None


def _json(text: str):
    try:
        return json.loads(text)
    except ValueError as error:
        # json's message names a line and column but never echoes the value (it may hold a secret).
        raise ValueError(f"not valid JSON ({error.msg} at character {error.pos})") from None


class SettingsProblem(ValueError):
    """Settings that cannot be used; the message is one line: what is wrong, and an example."""


def load_settings(**values) -> Settings:
    """Settings from the environment / .env (and `values`, by room as for Settings), or SettingsProblem in one line. The
    message never repeats the value given: it may be a token."""
    try:
        return Settings(**values)
    except ValidationError as error:
        problems = error.errors(include_input=False, include_url=False)
        first = problems[0]
        name = str(first["loc"][0]) if first["loc"] else "?"
        where = ".".join(str(part) for part in first["loc"][1:])
        reason = " ".join(str(first["msg"]).split())
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        example = EXAMPLES.get(name)
        raise SettingsProblem(f"STICKTIONARY_{name.upper()}{'[' + where + ']' if where else ''} is not valid: "
                              f"{reason}{more}" + (f"; for example STICKTIONARY_{name.upper()}={example}"
                                                   if example else "")) from None
    except SettingsError as error:
        raise SettingsProblem(" ".join(str(error).split())) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
