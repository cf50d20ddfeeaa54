"""One settings object for every process, read from the environment or `.env`.

Every variable is prefixed ``STICKTIONARY_``, e.g. ``STICKTIONARY_DATABASE_URL``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STICKTIONARY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = Field(
        default="sqlite:///var/sticktionary.sqlite3",
        description="SQLAlchemy URL; a SQLite file by default, PostgreSQL as postgresql+psycopg://…",
    )
    sticker_root: Path = Field(default=Path("var/stickers"), description="where sticker files live")
    export_dir: Path = Field(default=Path("var/exports"))
    pseudonym_key: str = Field(
        default="change-me", description="secret for the keyed hash that makes pseudonymous ids"
    )

    # Telegram. STICKTIONARY_BOTS is JSON, e.g.
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
    # Outbox delivery: a claimed message is leased this long (a killed sender's rows are claimable
    # again after it).
    outbox_lease_seconds: float = Field(default=120, gt=0)
    # One attempt budget for everything sent to Telegram: a reply or an outbox message is tried at
    # most this many times in all (a 429 wait is no attempt), then dropped or dead-lettered with
    # its reason. STICKTIONARY_OUTBOX_MAX_ATTEMPTS is the older name of the same budget.
    send_attempts: int = Field(default=8, ge=1)
    outbox_max_attempts: int | None = Field(default=None, ge=1)
    # A reply still undelivered this long after its update arrived (a long Telegram outage) is
    # dropped with one log line rather than shown to a player who has moved on.
    reply_max_age_seconds: float = Field(default=3600, gt=0)
    # Threads that run game work (database and engine) for all the bots of a process. Few is
    # faster: the work holds Python's interpreter lock, so more threads only queue on it and on
    # the database's writer lock; two keep one slow call from stalling everyone.
    game_threads: int = Field(default=2, ge=1, le=32)
    # Redis, for running several worker processes per bot: Telegram's pacing and the one-update-
    # at-a-time order of each chat are then shared by all of them. Unset: kept in each process.
    redis_url: str | None = Field(default=None, description="e.g. redis://127.0.0.1:6379/0")
    # host:port of a small HTTP server with only /healthz, /readyz and /metrics, for `run` by long
    # polling (which has no server of its own) and `jobs start`. Unset: none. With webhooks the
    # webhook server answers them too.
    health_listen: str | None = Field(default=None, description="e.g. 0.0.0.0:9090")

    # Game rules (docs/design.md, "The game"); defaults follow the paper.
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

    # Partners (issue 21, core/game/partners.py): a model player answers a submitted round no person
    # has taken for partner_after seconds (<= 0: no partners). partner_model is "bm25" (the search
    # index) or "dense" (the semantic extra with semantic_model_en / _zh). partner_points: what the
    # labeler earns when a partner finds their sticker, once per round (0: feedback only).
    partner_after: float = 120.0
    partner_poll_seconds: float = 2.0
    partner_model: Literal["bm25", "dense"] = "bm25"
    partner_points: int = 1
    schedule_partners: str = "* * * * *"

    # Jobs (`sticktionary jobs`, or inside `sticktionary run` with jobs_in_bot_process). Schedules are
    # cron expressions in jobs_timezone: five fields, or six with seconds first.
    jobs_timezone: str = "UTC"
    jobs_in_bot_process: bool = False
    schedule_leaderboard_daily: str = "0 20 * * *"
    schedule_leaderboard_weekly: str = "5 20 * * sun"
    schedule_prizes: str = "15 0 * * *"  # tallies the last complete prize period
    schedule_export: str = "0 3 * * *"
    schedule_expiry: str = "*/10 * * * *"
    schedule_export_retention: str = "30 3 * * *"
    schedule_retention: str = "0 4 * * *"
    # Where leaderboards are posted besides the players who opted in: {"en": [chat ids], "zh": [...]}
    leaderboard_chats: Annotated[dict[Literal["en", "zh"], list[int]], NoDecode] = Field(default_factory=dict)
    leaderboard_size: int = 10
    prize_period: Literal["day", "week", "month"] = "week"
    prize_top_n: int = 3

    # Research export
    export_keep: int = Field(default=14, ge=1, description="complete exports kept by the retention job")
    export_similarity_stickers: int = 1_000  # BLEU/ROUGE-L sample (stickers)
    export_eval_queries: int = 20_000  # BM25 Recall@k sample (test queries)
    export_without_seeds: bool = Field(default=False, description="leave imported seed queries out of the "
                                       "nightly export's files and metrics (`export now --without-seeds`)")
    export_time_resolution: Literal["hour", "minute", "second"] = Field(
        default="hour", description="exported timestamps are truncated to this (privacy: no exact activity times)")
    export_original_text: bool = Field(default=False, description="also export the player's own text of a "
                                       "query a moderator corrected (off: only the corrected text)")
    export_semantic: bool = Field(default=True, description="compute CS and BERTScore in the export when the "
                                  "semantic extra and the models are on this machine")
    # Table 4's semantic figures: the paper's BERT-base models, by Hugging Face name (local cache only)
    # or local folder. Nothing is downloaded: pre-fetch them or point these at a folder.
    semantic_model_en: str = "bert-base-uncased"
    semantic_model_zh: str = "bert-base-chinese"
    pull_tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list,
                                                              description="bearer tokens of researchers")
    pull_listen: str = "0.0.0.0:8080"

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

    # Group rounds (issue 22, core/game/group_rounds.py): how long a round in a group stays open, and
    # the per-group pace of what the bot posts there unasked (/top, the pointer at an open round):
    # Telegram allows about 20 messages a minute in a group.
    group_round_seconds: float = Field(default=60, gt=0, le=3600)
    group_pace_seconds: float = Field(default=20, ge=0, le=3600)

    # Logs of `run`, `jobs start` and `export serve`: text (one line a record) or json (one JSON object
    # a line, with the bot, update id and player where known; tokens redacted as in text).
    log_format: Literal["text", "json"] = "text"

    @model_validator(mode="after")
    def _one_attempt_budget(self):
        if self.outbox_max_attempts is not None and "send_attempts" not in self.model_fields_set:
            self.send_attempts = self.outbox_max_attempts
        self.outbox_max_attempts = self.send_attempts
        return self

    @field_validator("moderators", "pull_tokens", mode="before")
    @classmethod
    def _list_from_text(cls, value):
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return _json(text)
        return [part.strip() for part in text.split(",") if part.strip()]

    @field_validator("retention_inbox_days", "retention_outbox_sent_days", "retention_search_log_days")
    @classmethod
    def _retention_floor(cls, value: float, info):
        floor = RETENTION_FLOORS[info.field_name]
        if 0 < value < floor:
            raise ValueError(f"keep at least {floor:g} days (or 0: keep forever)")
        return value

    @field_validator("bots", "leaderboard_chats", mode="before")
    @classmethod
    def _json_from_text(cls, value):
        if not isinstance(value, str):
            return value
        return _json(value.strip()) if value.strip() else None

    def secrets(self) -> list[str]:
        """Every secret this configuration holds, for the log redaction filter."""
        found = [b.token.get_secret_value() for b in self.bots] + [t.get_secret_value() for t in self.pull_tokens]
        if self.webhook_secret is not None:
            found.append(self.webhook_secret.get_secret_value())
        if self.pseudonym_key != "change-me":
            found.append(self.pseudonym_key)
        return [secret for secret in found if secret]


def _json(text: str):
    try:
        return json.loads(text)
    except ValueError as error:
        # json's message names a line and column but never echoes the value (it may hold a secret).
        raise ValueError(f"not valid JSON ({error.msg} at character {error.pos})") from None


class SettingsProblem(ValueError):
    """Settings that cannot be used; the message is one line: what is wrong, and an example."""


def load_settings(**values) -> Settings:
    """Settings from the environment / .env (and `values`), or SettingsProblem in one line. The
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
