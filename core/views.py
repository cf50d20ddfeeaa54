"""What the engine hands to the layers above: plain, framework-neutral, immutable values."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.vocabulary import Role, Verdict


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
    target_rank: int | None  # among all stickers of the language; None when nothing leads to the sticker
    hits: list[StickerView]  # the preview grid, best first
    total: int = 0  # how many stickers of the language the rank is counted among
    # core.vocabulary.Verdict: the query leads to the sticker (target_rank), does not (yet), or shares only
    # function words (stop words, particles) with the sticker's queries. A visual-only description never
    # gets a preview: add_query refuses it (ErrorCode.VISUAL_ONLY).
    # `hits` only ever holds stickers sharing a content word with the query.
    verdict: str = Verdict.RANKED
    target_position: int | None = None  # 1-based tile of the sticker in `hits`, None when not in the grid


@dataclass(frozen=True)
class LabelTaskView:
    round_id: int
    language: str
    sticker: StickerView
    context: list[ContextMessage]
    queries: list[QueryView] = field(default_factory=list)
    role: str = Role.LABELER
    previews: list[PreviewView] = field(default_factory=list)  # one per query, in the same order
    # the queries the taboo refuses (other players', seeds, other open rounds' drafts), most frequent
    # first, at most TABOO_SHOWN, one text per normalized form, never the player's own
    taken: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RetrievalTaskView:
    task_id: int
    language: str
    queries: list[str]
    candidates: list[StickerView]  # in the order shown: button n is candidates[n-1]
    picks: list[int] = field(default_factory=list)
    role: str = Role.RETRIEVER


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
    streak: int  # retrievals in a row, newest first, in which the player found the sticker
    period_points: int = 0  # in the leaderboard's period (the last 7 days)
    period_rank: int | None = None


@dataclass(frozen=True)
class LeaderboardRow:
    rank: int
    player_id: int
    nickname: str  # chosen or generated (core/nicknames.py); never the Telegram name
    points: int


@dataclass(frozen=True)
class ReviewItem:
    query: QueryView
    language: str
    sticker: StickerView
    round_queries: list[QueryView]
    retriever_picks: list[StickerView]
    author_pseudonym: str | None


@dataclass(frozen=True)
class ReviewQuery:
    id: int
    text: str  # the final text (a correction replaces what the labeler typed)
    status: str
    original: str  # what the labeler typed


@dataclass(frozen=True)
class ReviewRound:
    """One labeler round whose queries a retriever missed: what a moderator decides on, one screen."""

    round_id: int
    language: str
    sticker: StickerView
    context: list[ContextMessage]
    queries: list[ReviewQuery]  # every query of the round; those with status needs_review are open
    retriever_picks: list[StickerView]  # the missed retrieval's picks, best first
    author_pseudonym: str | None
    position: int = 1  # 1-based place of this round in the (filtered) queue
    waiting: int = 1  # rounds waiting in the (filtered) queue

    @property
    def open(self) -> list[ReviewQuery]:
        return [q for q in self.queries if q.status == "needs_review"]
