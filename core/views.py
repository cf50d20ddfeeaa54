"""What the engine hands to the layers above: plain, framework-neutral, immutable values."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StickerView:
    id: int
    key: str
    file_path: str
    format: str


@dataclass(frozen=True)
class ContextMessage:
    sender: str  # "A", "B", … : chat members are anonymised in the order they speak
    text: str


@dataclass(frozen=True)
class QueryView:
    id: int
    text: str
    status: str


@dataclass(frozen=True)
class PreviewView:
    """The labeler's "preliminary result" for one query."""

    query: QueryView
    target_rank: int | None
    hits: list[StickerView]


@dataclass(frozen=True)
class LabelTaskView:
    round_id: int
    language: str
    sticker: StickerView
    context: list[ContextMessage]
    queries: list[QueryView] = field(default_factory=list)
    role: str = "labeler"


@dataclass(frozen=True)
class RetrievalTaskView:
    task_id: int
    language: str
    queries: list[str]
    candidates: list[StickerView]  # in the order shown: button n is candidates[n-1]
    picks: list[int] = field(default_factory=list)
    role: str = "retriever"


@dataclass(frozen=True)
class RankingOutcome:
    task_id: int
    hit_rank: int | None
    target: StickerView
    points: int  # what the retriever earned
    validated_query_ids: list[int]
    sent_to_review: bool


@dataclass(frozen=True)
class SubmitResult:
    round_id: int
    query_count: int


@dataclass(frozen=True)
class PlayerStats:
    player_id: int
    points: int
    rank: int | None
    accuracy: float | None
    answered: int
    streak: int


@dataclass(frozen=True)
class LeaderboardRow:
    rank: int
    player_id: int
    display_name: str
    points: int


@dataclass(frozen=True)
class ReviewItem:
    query: QueryView
    language: str
    sticker: StickerView
    round_queries: list[QueryView]
    retriever_picks: list[StickerView]
    author_pseudonym: str | None
