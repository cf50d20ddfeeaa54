"""One settings object for every process, read from the environment or `.env`.

Every variable is prefixed ``STICKTIONARY_``, e.g. ``STICKTIONARY_DATABASE_URL``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class BotConfig(BaseModel):
    """One Telegram bot: its token, the framework that runs it and the languages it serves."""

    token: SecretStr
    framework: Literal["ptb", "aiogram"] = "ptb"
    languages: list[Literal["en", "zh"]] = Field(default_factory=lambda: ["en", "zh"], min_length=1)
    name: str | None = None  # a short key for logs, the file_id cache and the webhook path


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
    bots: list[BotConfig] = Field(default_factory=list)
    moderators: list[int] = Field(default_factory=list, description="Telegram user ids of moderators")
    telegram_api: str = "https://api.telegram.org"
    webhook_url: str | None = Field(default=None, description="public base URL; unset: long polling")
    webhook_secret: SecretStr | None = None
    webhook_listen: str = "0.0.0.0:8443"
    media_cache: Path = Path("var/media-cache")
    # Threads that run game work (database and engine) for all the bots of a process. Few is
    # faster: the work holds Python's interpreter lock, so more threads only queue on it and on
    # the database's writer lock; two keep one slow call from stalling everyone.
    game_threads: int = Field(default=2, ge=1, le=32)

    # Game rules (DESIGN.md "The game"); defaults follow the paper.
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
    # Where leaderboards are posted besides the players who opted in: {"en": [chat ids], "zh": [...]}
    leaderboard_chats: dict[Literal["en", "zh"], list[int]] = Field(default_factory=dict)
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
    pull_tokens: list[SecretStr] = Field(default_factory=list, description="bearer tokens of researchers")
    pull_listen: str = "0.0.0.0:8080"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
