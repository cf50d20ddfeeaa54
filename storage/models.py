"""SQLModel tables. The score ledger is the only source of points; everything else derives.

Times are timezone-aware UTC (SQLModel's UTCDateTime), on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class ContextStatus(StrEnum):
    CANDIDATE = "candidate"  # passed curation, waiting for a moderator
    APPROVED = "approved"  # in the game
    REJECTED = "rejected"


class QueryStatus(StrEnum):
    DRAFT = "draft"  # in an open labeler round, not submitted yet
    PENDING = "pending"  # submitted, waiting for a retrieval
    VALIDATED = "validated"  # a retriever found the sticker from it
    NEEDS_REVIEW = "needs_review"  # a retriever missed: moderators decide
    ACCEPTED = "accepted"
    CORRECTED = "corrected"
    DISCARDED = "discarded"


# Queries that count as ground truth: they are searchable and exported.
USABLE_QUERY_STATUSES = (QueryStatus.VALIDATED, QueryStatus.ACCEPTED, QueryStatus.CORRECTED)


class QuerySource(StrEnum):
    SEED = "seed"
    LABELER = "labeler"
    SUGGESTION = "suggestion"


class RoundStatus(StrEnum):
    OPEN = "open"
    SUBMITTED = "submitted"
    SKIPPED = "skipped"
    EXPIRED = "expired"


class RoundKind(StrEnum):
    LABEL = "label"
    SUGGESTION = "suggestion"


class PlayerKind(StrEnum):
    HUMAN = "human"
    MODEL = "model"  # a partner bot answering rounds no person has taken yet; never ranked


class TaskSetting(StrEnum):
    PRIVATE = "private"  # one retriever in a private chat
    GROUP = "group"  # a race in a group chat


class TaskStatus(StrEnum):
    OPEN = "open"
    ANSWERED = "answered"
    SKIPPED = "skipped"
    EXPIRED = "expired"


class Sticker(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, index=True, max_length=255)  # file name: StickerQueries' sticker_id
    file_path: str = Field(max_length=1024)  # relative to the sticker root
    format: str = Field(max_length=8)  # png, gif, webm, webp, tgs
    sha256: str | None = Field(default=None, max_length=64)
    size_bytes: int | None = Field(default=None, sa_type=BigInteger)
    domain: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(default_factory=utcnow)


class ChatContext(SQLModel, table=True):
    """The dialogue that led up to one use of a sticker, curated for one language."""

    __table_args__ = (
        UniqueConstraint("sticker_id", "language", name="uq_context_sticker_language"),
        Index("ix_context_pick", "language", "status", "priority"),
    )
    id: int | None = Field(default=None, primary_key=True)
    sticker_id: int = Field(foreign_key="sticker.id", index=True)
    conversation: str = Field(max_length=255)  # source file, e.g. "01.json"
    message_id: int = Field(sa_type=BigInteger)
    messages: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    language: str = Field(max_length=8)
    domain: str | None = Field(default=None, max_length=255)
    word_count: int = 0
    status: str = Field(default=ContextStatus.CANDIDATE, max_length=16)
    # Lower is shown first: grows with collected queries and with skips.
    priority: int = 0
    label_count: int = 0
    skip_count: int = 0
    created_at: datetime = Field(default_factory=utcnow)


class Player(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    telegram_user_id: int | None = Field(default=None, sa_type=BigInteger, unique=True, index=True)
    display_name: str = Field(default="", max_length=255)
    pseudonym: str = Field(unique=True, max_length=32)  # random; the only id exports carry
    # What /top, the leaderboard posts and /prizes show (never the Telegram name); None: the default
    # one generated from the player id (core/nicknames.py). Unique per language among chosen ones.
    nickname: str | None = Field(default=None, max_length=32)
    nickname_key: str | None = Field(default=None, max_length=64, index=True)  # normalised, for uniqueness
    language: str | None = Field(default=None, max_length=8)
    consent_at: datetime | None = None
    consent_withdrawn_at: datetime | None = None
    kind: str = Field(default=PlayerKind.HUMAN, max_length=8, index=True)
    is_moderator: bool = False
    banned: bool = False
    active: bool = True  # false once Telegram says the player blocked the bot
    flagged: bool = False  # failed gold checks: moderators look
    leaderboard_opt_in: bool = False  # wants the daily and weekly leaderboard posts
    last_role: str | None = Field(default=None, max_length=16)
    # What the player's next text message answers when it is not a query: ("suggest", task id) or
    # ("correct", query id). Kept here, not in a process, so it survives restarts and every worker
    # sees it; it is good only for the next text message and only while its task is still open.
    awaiting_kind: str | None = Field(default=None, max_length=16)
    awaiting_ref: int | None = Field(default=None, sa_type=BigInteger)
    # The bot the player last wrote to (its key): what reaches them from the outbox goes through it.
    bot_key: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    last_active_at: datetime = Field(default_factory=utcnow)


class LabelRound(SQLModel, table=True):
    __table_args__ = (Index("ix_round_pool", "language", "status", "retrieval_count"),)
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(default=RoundKind.LABEL, max_length=16)
    player_id: int = Field(foreign_key="player.id", index=True)
    sticker_id: int = Field(foreign_key="sticker.id", index=True)
    context_id: int | None = Field(default=None, foreign_key="chatcontext.id")
    language: str = Field(max_length=8)
    status: str = Field(default=RoundStatus.OPEN, max_length=16, index=True)
    retrieval_count: int = 0
    # The taken queries (ids, seeds included) the label screen showed as taboo, as first shown;
    # None for rounds from before it was recorded.
    taboo_shown: list | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # When a partner (a model player) took the round: set by the conditional UPDATE that lets exactly
    # one partner answer it, in whichever process (core/game/partners.py).
    partner_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    submitted_at: datetime | None = None


class Query(SQLModel, table=True):
    __table_args__ = (Index("ix_query_taboo", "sticker_id", "language", "normalized_text"),)
    id: int | None = Field(default=None, primary_key=True)
    sticker_id: int = Field(foreign_key="sticker.id", index=True)
    language: str = Field(max_length=8, index=True)
    text: str = Field(max_length=512)
    normalized_text: str = Field(max_length=512)
    corrected_text: str | None = Field(default=None, max_length=512)
    author_id: int | None = Field(default=None, foreign_key="player.id", index=True)
    label_round_id: int | None = Field(default=None, foreign_key="labelround.id", index=True)
    source: str = Field(default=QuerySource.LABELER, max_length=16)
    status: str = Field(default=QueryStatus.DRAFT, max_length=16, index=True)
    hit_count: int = 0  # distinct retrievers who found the sticker from it
    # The search tokens of final_text, space-joined, stored when the query becomes usable, so that
    # a process starting up does not tokenize every query again (jieba: ~0.1 ms a query).
    search_tokens: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    validated_at: datetime | None = None
    # Set when a moderator skips the query's round: skipped rounds go to the back of the review queue.
    review_skipped_at: datetime | None = None
    # A seed whose row in the imported StickerQueries CSV quoted its field though it needed no quotes
    # (5 rows of the zh release): the export quotes that row again, so the file comes out byte for byte.
    release_quoted: bool | None = None

    @property
    def final_text(self) -> str:
        return self.corrected_text or self.text


class RetrievalTask(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    retriever_id: int = Field(foreign_key="player.id", index=True)
    label_round_id: int | None = Field(default=None, foreign_key="labelround.id", index=True)
    sticker_id: int = Field(foreign_key="sticker.id")  # the target
    language: str = Field(max_length=8)
    query_ids: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    candidate_ids: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    picks: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    seed: int = Field(default=0, sa_type=BigInteger)
    is_gold: bool = False
    setting: str = Field(default=TaskSetting.PRIVATE, max_length=16)
    status: str = Field(default=TaskStatus.OPEN, max_length=16, index=True)
    hit_rank: int | None = None  # 1..3, or None for a miss
    created_at: datetime = Field(default_factory=utcnow)
    answered_at: datetime | None = None


class TaskQuery(SQLModel, table=True):
    """Which queries a retrieval task showed; resonance counts distinct retrievers per query."""

    task_id: int = Field(foreign_key="retrievaltask.id", primary_key=True)
    query_id: int = Field(foreign_key="query.id", primary_key=True, index=True)


class Review(SQLModel, table=True):
    """Audit trail of every moderator decision."""

    id: int | None = Field(default=None, primary_key=True)
    query_id: int | None = Field(default=None, foreign_key="query.id", index=True)
    context_id: int | None = Field(default=None, foreign_key="chatcontext.id")
    moderator_id: int | None = Field(default=None, foreign_key="player.id")
    action: str = Field(max_length=16)
    old_text: str | None = Field(default=None, max_length=512)
    new_text: str | None = Field(default=None, max_length=512)
    created_at: datetime = Field(default_factory=utcnow)


class ScoreEvent(SQLModel, table=True):
    """The point ledger: one row per award; the idempotency key makes a second award impossible."""

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, max_length=128)
    player_id: int = Field(foreign_key="player.id", index=True)
    language: str = Field(max_length=8)
    points: int
    reason: str = Field(max_length=32)
    retrieval_task_id: int | None = Field(default=None, foreign_key="retrievaltask.id")
    query_id: int | None = Field(default=None, foreign_key="query.id")
    created_at: datetime = Field(default_factory=utcnow, index=True)


class PlaySession(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    player_id: int = Field(foreign_key="player.id", index=True)
    language: str = Field(max_length=8)
    started_at: datetime = Field(default_factory=utcnow)
    last_activity_at: datetime = Field(default_factory=utcnow)
    task_count: int = 0


class OutboxStatus(StrEnum):
    PENDING = "pending"  # waiting for a bot (again, after a failed attempt: from next_attempt_at on)
    SENDING = "sending"  # claimed by one bot until lease_until; claimable again once that has passed
    HELD = "held"  # a game notice kept while its player is in a task: folded into their next screen
    SENT = "sent"  # Telegram accepted it
    DEAD = "dead"  # given up on, with the reason in last_error


class OutboxMessage(SQLModel, table=True):
    """What the engine and jobs want a player or chat to see; the running bots deliver it
    (core/outbox.py: claimed with a lease, sent, then marked sent or dead-lettered)."""

    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)
    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(unique=True, max_length=128)
    player_id: int | None = Field(default=None, foreign_key="player.id", index=True)
    chat_id: int | None = Field(default=None, sa_type=BigInteger)
    kind: str = Field(max_length=32)
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    status: str = Field(default=OutboxStatus.PENDING, max_length=16)
    attempts: int = 0  # claims so far, the current one included
    next_attempt_at: datetime = Field(default_factory=utcnow)
    claimed_by: str | None = Field(default=None, max_length=128)  # the runtime holding the lease
    lease_until: datetime | None = None
    sent_at: datetime | None = None
    last_error: str | None = Field(default=None, max_length=500)


class ChatMigration(SQLModel, table=True):
    """A group that became a supergroup has a new chat id: posts to the old one follow it."""

    old_chat_id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False})
    new_chat_id: int = Field(sa_type=BigInteger)
    migrated_at: datetime = Field(default_factory=utcnow)


class GroupStatus(StrEnum):
    ACTIVE = "active"  # the bot is a member and may post
    MUTED = "muted"  # the bot is a member but lost the right to send messages
    REMOVED = "removed"  # the bot was removed (or left)
    MIGRATED = "migrated"  # the group became a supergroup: its rows moved to the new id


class GroupChat(SQLModel, table=True):
    """A group the bot was added to. Only what the game needs: nothing of the group's conversation,
    not even its title, is kept."""

    chat_id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False})
    bot_key: str = Field(max_length=64)
    language: str | None = Field(default=None, max_length=8)  # set by `/round <language>`
    status: str = Field(default=GroupStatus.ACTIVE, max_length=16)
    last_post_at: datetime | None = None  # the last post the bot made unasked: the group's pace
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class GroupRoundStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class GroupRound(SQLModel, table=True):
    """One retrieval round posted in a group: a submitted label round's queries and a grid, raced by
    the members until `closes_at` (or earlier, see core/game/group_rounds.py)."""

    __table_args__ = (Index("ix_groupround_due", "status", "closes_at"),
                      Index("ix_groupround_chat", "chat_id", "status"))
    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(sa_type=BigInteger)
    bot_key: str = Field(max_length=64)
    label_round_id: int = Field(foreign_key="labelround.id")
    sticker_id: int = Field(foreign_key="sticker.id")  # the target
    language: str = Field(max_length=8)
    query_ids: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    candidate_ids: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    seed: int = Field(default=0, sa_type=BigInteger)
    posted_by: int | None = Field(default=None, foreign_key="player.id")
    status: str = Field(default=GroupRoundStatus.OPEN, max_length=16)
    message_id: int | None = Field(default=None, sa_type=BigInteger)  # known once Telegram has it
    opened_at: datetime = Field(default_factory=utcnow)
    closes_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None


class GroupPick(SQLModel, table=True):
    """A member's one pick in a group round, in the order the picks were made (the id). It becomes a
    judgment (a RetrievalTask with setting='group', `task_id`) when the round closes."""

    __table_args__ = (UniqueConstraint("round_id", "player_id", name="uq_grouppick_member"),)
    id: int | None = Field(default=None, primary_key=True)
    round_id: int = Field(foreign_key="groupround.id", index=True)
    player_id: int = Field(foreign_key="player.id", index=True)
    position: int  # the grid number pressed (1-based)
    sticker_id: int = Field(foreign_key="sticker.id")
    task_id: int | None = Field(default=None, foreign_key="retrievaltask.id", index=True)
    points: int = 0
    picked_at: datetime = Field(default_factory=utcnow)


class TelegramFile(SQLModel, table=True):
    """file_id belongs to one bot token: cache one per (bot, sticker, kind)."""

    bot_key: str = Field(primary_key=True, max_length=64)
    sticker_id: int = Field(foreign_key="sticker.id", primary_key=True)
    kind: str = Field(primary_key=True, max_length=16)  # sticker, animation, grid…
    file_id: str = Field(max_length=255)
    created_at: datetime = Field(default_factory=utcnow)


class InlineChoice(SQLModel, table=True):
    """A sticker a consented player chose from the bot's inline search results (Telegram's
    chosen_inline_result): an implicit relevance judgment from real use. Nobody else's choice is kept,
    and the time is kept to the hour only."""

    id: int | None = Field(default=None, primary_key=True)
    bot_key: str = Field(max_length=64)
    player_id: int = Field(foreign_key="player.id", index=True)
    language: str = Field(max_length=8)
    query: str = Field(max_length=256)  # as searched: normalised (core.inline_search), "" for the empty query
    shown: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # the page's sticker ids
    sticker_id: int = Field(foreign_key="sticker.id")
    rank: int  # 1-based place of the chosen sticker among all the query's results
    hour: datetime  # when, truncated to the hour


class LiveScreen(SQLModel, table=True):
    """The messages that make up a task's screen in a player's chat (one text, one photo), edited in
    place while the task lasts. Message ids are known only once Telegram has the message, so the
    runtime records them here as it sends; every process reads them from here (docs/design.md, "Many
    processes")."""

    bot_key: str = Field(primary_key=True, max_length=64)
    player_id: int = Field(primary_key=True, foreign_key="player.id")
    screen: str = Field(primary_key=True, max_length=32)  # "label:<round id>", "retrieval:<task id>"
    chat_id: int = Field(sa_type=BigInteger)
    text_message_id: int | None = Field(default=None, sa_type=BigInteger)
    photo_message_id: int | None = Field(default=None, sa_type=BigInteger)
    state: str = Field(default="live", max_length=16)  # live, finished, moved
    updated_at: datetime = Field(default_factory=utcnow)


class InboxStatus(StrEnum):
    RECEIVED = "received"  # stored and acknowledged to Telegram, not handled yet
    HANDLED = "handled"  # its effects and its replies are committed; the replies may not be delivered yet
    DONE = "done"  # replies delivered
    SKIPPED = "skipped"  # not a move in the game (a group message, an update no framework could parse)
    FAILED = "failed"  # the handler raised: logged, the player told, never retried


class InboxUpdate(SQLModel, table=True):
    """The transactional inbox: every update Telegram gave a bot, stored before it is acknowledged.

    An update is handled in the same transaction that marks it handled and stores its replies, so
    a crash at any moment leaves it either untouched (handled again after the restart) or handled
    with its replies waiting to be delivered; (bot_key, update_id) makes a redelivery a no-op."""

    __table_args__ = (Index("ix_inbox_lane", "bot_key", "chat_key", "status", "update_id"),
                      Index("ix_inbox_status", "status", "received_at"))
    bot_key: str = Field(primary_key=True, max_length=64)
    update_id: int = Field(primary_key=True, sa_type=BigInteger)
    chat_key: int = Field(sa_type=BigInteger)  # a chat's updates are handled one at a time, in order
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=InboxStatus.RECEIVED, max_length=16)
    replies: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    error: str | None = Field(default=None, max_length=500)
    received_at: datetime = Field(default_factory=utcnow)
    handled_at: datetime | None = None
    done_at: datetime | None = None
    # Delivery of the replies (see bots/runtime.py): attempts spent on them so far, out of the one
    # budget (Settings.delivery.send_attempts), and how many of them Telegram already has (not sent again).
    send_attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    replies_sent: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class PrizeKind(StrEnum):
    TOP = "top"  # among the top N of the period and language
    PARTICIPATION = "participation"  # played a session of at least N tasks in the period


class Prize(SQLModel, table=True):
    """A prize a tally decided; moderators hand it out and mark it delivered."""

    __table_args__ = (UniqueConstraint("kind", "period", "period_start", "language", "player_id", name="uq_prize"),)
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)
    period: str = Field(max_length=8)  # day, week, month
    period_start: datetime
    period_end: datetime
    language: str = Field(max_length=8)
    player_id: int = Field(foreign_key="player.id", index=True)
    rank: int | None = None  # top prizes
    points: int = 0  # points in the period
    sessions: int = 0  # qualifying sessions in the period
    created_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = Field(default=None, index=True)
    delivered_by: int | None = Field(default=None, foreign_key="player.id")


class JobRun(SQLModel, table=True):
    """One firing of a scheduled job. The unique slot is what makes a job fire once across processes."""

    __table_args__ = (UniqueConstraint("job", "scheduled_for", name="uq_jobrun_slot"),)
    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=64)
    scheduled_for: datetime
    runner: str = Field(max_length=128)  # host:pid
    status: str = Field(default="running", max_length=16)  # running, done, failed
    attempts: int = 1  # runs of this slot so far (a failed or crashed one is tried again)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    result: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error: str | None = Field(default=None, max_length=2000)


class SearchChange(SQLModel, table=True):
    """The ordered log of changes to the searchable queries: written in the transaction that makes the
    change, applied by every process's search index after commit (it re-reads the sticker's usable
    queries of that language, so a row says which document changed, not how)."""

    __table_args__ = ({"sqlite_autoincrement": True},)  # ids never reused, even after pruning
    id: int | None = Field(default=None, primary_key=True)
    language: str = Field(max_length=8)
    sticker_id: int = Field(foreign_key="sticker.id")
    reason: str = Field(max_length=16)  # validated, accepted, corrected, discarded, consent, imported
    created_at: datetime = Field(default_factory=utcnow)
