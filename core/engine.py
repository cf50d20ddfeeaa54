"""The game: labeler rounds, retrieval tasks, scoring, feedback, gold checks, sessions and review.

Every public method is one database transaction. Rules that must hold under concurrency are
enforced by the database, not by Python state: a task is answered by a conditional UPDATE that
only one caller can win, every award goes through the ledger's unique idempotency key, and a
player's next task is chosen while holding that player's row lock (SQLite: BEGIN IMMEDIATE).
Every status change is an UPDATE … WHERE status = <old> whose rowcount or RETURNING decides what
follows, and every counter is changed in SQL (x = x + 1 … RETURNING x), never read and written back.
Locks are taken in one order: player, then their round or task, then the rows those touch.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, or_, select

from core.nicknames import NicknameError, clean_nickname, nickname_of
from core.outbox import Outbox
from core.search import SearchIndexes
from core.search_follower import SearchFollower
from core.search_log import record_author_change, record_search_change, search_tokens
from core.text import QueryTextError, clean_query_text, content_tokens, is_visual_only, normalize_query, tokenize
from core.views import (
    ContextMessage,
    LabelTaskView,
    LeaderboardRow,
    PlayerStats,
    PreviewView,
    QueryView,
    RankingOutcome,
    RetrievalTaskView,
    ReviewItem,
    ReviewQuery,
    ReviewRound,
    StickerView,
    SubmitResult,
)
from storage.db import insert_ignoring_conflicts, read_session, session_scope
from storage.models import (
    USABLE_QUERY_STATUSES,
    ChatContext,
    ContextStatus,
    LabelRound,
    Player,
    PlaySession,
    Query,
    QuerySource,
    QueryStatus,
    RetrievalTask,
    Review,
    RoundKind,
    RoundStatus,
    ScoreEvent,
    Sticker,
    TaskQuery,
    TaskStatus,
    utcnow,
)
from storage.settings import Settings

LANGUAGES = ("en", "zh")
LABELER, RETRIEVER = "labeler", "retriever"
AWAITING_KINDS = ("suggest", "correct")

# How many of the queries already collected for a sticker the label screen shows (taboo, up front).
TABOO_SHOWN = 8

class GameError(Exception):
    """A request the rules refuse; `code` picks the message the player sees. Nothing changed."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


def context_priority(label_count: int, skip_count: int) -> int:
    """Lower is shown first: stickers with few queries, and rarely skipped ones."""
    return label_count + 2 * skip_count


class Game:
    def __init__(
        self,
        db: Engine,
        settings: Settings,
        *,
        indexes: SearchIndexes | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        # The indexes follow the database's change log (core/search_follower.py); indexes handed in
        # (the jobs, which never search) stay as they are.
        self.search: SearchFollower | None = None
        self._fixed_indexes = indexes
        self.outbox = Outbox(db, lambda: self.clock(), max_attempts=settings.outbox_max_attempts,
                             lease_seconds=settings.outbox_lease_seconds)
        if indexes is None:
            self.load_indexes()

    # ------------------------------------------------------------------ search index
    @property
    def indexes(self) -> SearchIndexes:
        """Every language's index, caught up with the change log when the last look is older than
        the poll interval."""
        if self.search is None:
            return self._fixed_indexes
        self.search.catch_up_if_due()
        return self.search.indexes

    def load_indexes(self) -> None:
        """(Re)build every language's index in bulk from the usable queries in the database."""
        if self.search is None:
            self.search = SearchFollower(self.db)
        self.search.load()

    def follow_search_changes(self) -> None:
        """Poll the change log from a background thread too (long-running processes: the bots)."""
        if self.search is not None:
            self.search.start()

    def close(self) -> None:
        if self.search is not None:
            self.search.stop()

    # ------------------------------------------------------------------ players
    def register_player(self, telegram_user_id: int | None, display_name: str = "",
                        language: str | None = None, bot_key: str | None = None) -> Player:
        """Find or create the player for a Telegram user (idempotent). `bot_key`: the bot they
        just wrote to, which the outbox then delivers their messages through."""
        if language is not None and language not in LANGUAGES:
            raise GameError("bad_language", language)
        if telegram_user_id is not None:  # the common case, a returning player: a read is enough
            existing = self.find_player(telegram_user_id)
            if existing:
                if bot_key is not None and existing.bot_key != bot_key:
                    self._use_bot(existing, bot_key)
                return existing
        with session_scope(self.db) as session:
            if telegram_user_id is not None:
                existing = session.exec(
                    select(Player).where(Player.telegram_user_id == telegram_user_id)
                ).first()
                if existing:
                    if bot_key is not None and existing.bot_key != bot_key:
                        existing.bot_key = bot_key
                        session.add(existing)
                    return existing
            player = Player(telegram_user_id=telegram_user_id, display_name=display_name[:255],
                            pseudonym=secrets.token_hex(8), language=language, bot_key=bot_key)
            try:
                with session.begin_nested():  # a savepoint: the outer transaction survives a conflict
                    session.add(player)
                    session.flush()
            except IntegrityError:  # a concurrent first contact created the row first
                return session.exec(
                    select(Player).where(Player.telegram_user_id == telegram_user_id)
                ).one()
            return player

    def _use_bot(self, player: Player, bot_key: str) -> None:
        with session_scope(self.db) as session:
            session.execute(update(Player).where(col(Player.id) == player.id).values(bot_key=bot_key))
        player.bot_key = bot_key

    def find_player(self, telegram_user_id: int) -> Player | None:
        with read_session(self.db) as session:
            return session.exec(select(Player).where(Player.telegram_user_id == telegram_user_id)).first()

    def get_player(self, player_id: int) -> Player:
        with read_session(self.db) as session:
            player = session.get(Player, player_id)
            if player is None:
                raise GameError("unknown_player")
            return player

    def set_language(self, player_id: int, language: str) -> None:
        if language not in LANGUAGES:
            raise GameError("bad_language", language)
        with session_scope(self.db) as session:
            player = self._lock_player(session, player_id)
            if self._open_work(session, player_id):
                raise GameError("finish_task_first")
            player.language = language
            session.add(player)

    def give_consent(self, player_id: int) -> None:
        with session_scope(self.db) as session:
            player = self._lock_player(session, player_id)
            player.consent_at = self.clock()
            if player.consent_withdrawn_at is not None:
                record_author_change(session, player_id, "consent")
            player.consent_withdrawn_at = None
            session.add(player)

    def withdraw_consent(self, player_id: int) -> None:
        """The player's queries leave future exports; open work is dropped."""
        with session_scope(self.db) as session:
            player = self._lock_player(session, player_id)
            if player.consent_withdrawn_at is None:
                record_author_change(session, player_id, "withdrawn")
            player.consent_withdrawn_at = self.clock()
            session.add(player)
            self._expire_open_work(session, player_id)

    def pause(self, player_id: int) -> None:
        """The player stops for now: their open task goes back to the pool."""
        with session_scope(self.db) as session:
            self._lock_player(session, player_id)
            self._expire_open_work(session, player_id)

    def set_leaderboard_opt_in(self, player_id: int, opted_in: bool) -> None:
        """Whether the player gets the daily and weekly leaderboard posts."""
        with session_scope(self.db) as session:
            player = self._lock_player(session, player_id)
            player.leaderboard_opt_in = opted_in
            session.add(player)

    def set_nickname(self, player_id: int, text: str | None) -> str:
        """The player's chosen nickname (shown on /top, the leaderboard posts and /prizes); unique
        among the chosen nicknames of the player's language. Returns it as it will be shown."""
        try:
            shown, key = clean_nickname(text)
        except NicknameError as error:
            raise GameError(error.code, error.detail) from None
        with session_scope(self.db) as session:
            player = self._lock_player(session, player_id)
            taken = session.exec(select(Player.id).where(Player.nickname_key == key, Player.id != player_id,
                                                         Player.language == player.language)).first()
            if taken is not None:
                raise GameError("nickname_taken", shown)
            player.nickname, player.nickname_key = shown, key
            session.add(player)
            return shown

    def nickname(self, player_id: int) -> str:
        player = self.get_player(player_id)
        return nickname_of(player.id, player.nickname, player.language)

    def set_moderator(self, player_id: int, is_moderator: bool = True) -> None:
        with session_scope(self.db) as session:
            player = self._lock_player(session, player_id)
            player.is_moderator = is_moderator
            session.add(player)

    def mark_inactive(self, player_id: int) -> None:
        """Telegram said the player blocked the bot: stop sending them anything."""
        with session_scope(self.db) as session:
            player = self._lock_player(session, player_id)
            player.active = False
            session.add(player)

    # ------------------------------------------------------------------ what the next text answers
    def expect_text(self, player_id: int, kind: str, ref: int) -> None:
        """The player's next text message answers `kind` ("suggest": for retrieval task `ref`;
        "correct": the moderator's new text for query `ref`) instead of being a query."""
        if kind not in AWAITING_KINDS:
            raise ValueError(kind)
        with session_scope(self.db) as session:
            session.execute(update(Player).where(Player.id == player_id).values(awaiting_kind=kind, awaiting_ref=ref))

    def take_expected_text(self, player_id: int) -> tuple[str, int] | None:
        """What the player's next text message answers, if anything, and forget it: it is good for
        one message only, and only while what it belongs to is still open (the retrieval task still
        the player's open task, the query still waiting for review)."""
        with session_scope(self.db) as session:
            player = self._lock_player(session, player_id)
            kind, ref = player.awaiting_kind, player.awaiting_ref
            if kind is None:
                return None
            player.awaiting_kind = player.awaiting_ref = None
            session.add(player)
            if kind == "suggest":
                open_task = session.exec(select(RetrievalTask.id).where(
                    RetrievalTask.id == ref, RetrievalTask.retriever_id == player_id,
                    RetrievalTask.status == TaskStatus.OPEN)).first()
                return (kind, ref) if open_task is not None else None
            waiting = session.exec(select(Query.id).where(Query.id == ref,
                                                          Query.status == QueryStatus.NEEDS_REVIEW)).first()
            return (kind, ref) if waiting is not None and player.is_moderator else None

    def forget_expected_text(self, player_id: int) -> None:
        with session_scope(self.db) as session:
            session.execute(update(Player).where(Player.id == player_id, col(Player.awaiting_kind).is_not(None))
                            .values(awaiting_kind=None, awaiting_ref=None))

    def _lock_player(self, session: Session, player_id: int) -> Player:
        player = session.exec(select(Player).where(Player.id == player_id).with_for_update()).first()
        if player is None:
            raise GameError("unknown_player")
        return player

    def _playable_player(self, session: Session, player_id: int) -> Player:
        player = self._lock_player(session, player_id)
        if player.banned:
            raise GameError("banned")
        if player.consent_at is None or player.consent_withdrawn_at is not None:
            raise GameError("no_consent")
        if player.language not in LANGUAGES:
            raise GameError("no_language")
        if not player.active:
            player.active = True  # they came back: deliver to them again
        player.last_active_at = self.clock()
        session.add(player)
        return player

    # ------------------------------------------------------------------ task assignment
    def current_task(self, player_id: int) -> LabelTaskView | RetrievalTaskView | None:
        with read_session(self.db) as session:
            work = self._open_work(session, player_id)
            return self._view_of(session, work) if work else None

    def next_task(self, player_id: int, prefer: str | None = None) -> LabelTaskView | RetrievalTaskView | None:
        """The player's open task, or a new one: the other role than last time when one exists."""
        with session_scope(self.db) as session:
            player = self._playable_player(session, player_id)
            work = self._open_work(session, player_id)
            if work is not None:
                return self._view_of(session, work)
            first = prefer or (RETRIEVER if player.last_role == LABELER else LABELER)
            order = [first, LABELER if first == RETRIEVER else RETRIEVER]
            for role in order:
                created = (self._new_label_round(session, player) if role == LABELER
                           else self._new_retrieval_task(session, player))
                if created is not None:
                    session.flush()
                    return self._view_of(session, created)
            return None

    def _open_work(self, session: Session, player_id: int) -> LabelRound | RetrievalTask | None:
        label_round = session.exec(select(LabelRound).where(
            LabelRound.player_id == player_id, LabelRound.status == RoundStatus.OPEN)).first()
        if label_round is not None:
            return label_round
        return session.exec(select(RetrievalTask).where(
            RetrievalTask.retriever_id == player_id, RetrievalTask.status == TaskStatus.OPEN)).first()

    def _view_of(self, session: Session, work: LabelRound | RetrievalTask):
        if isinstance(work, LabelRound):
            return self._label_view(session, work)
        return self._retrieval_view(session, work)

    def _labeled_sticker_ids(self, player_id: int):
        return select(LabelRound.sticker_id).where(LabelRound.player_id == player_id)

    def _new_label_round(self, session: Session, player: Player) -> LabelRound | None:
        base = select(ChatContext).where(
            ChatContext.language == player.language,
            ChatContext.status == ContextStatus.APPROVED,
            col(ChatContext.sticker_id).not_in(self._labeled_sticker_ids(player.id)),
        )
        candidates = base.subquery()
        lowest = session.exec(select(func.min(candidates.c.priority))).first()
        if lowest is None:
            return None
        # Among the least-labelled stickers, a random one: players see variety.
        pool = session.exec(base.where(ChatContext.priority == lowest).with_only_columns(
            ChatContext.id).order_by(ChatContext.id).limit(200)).all()
        context = session.get(ChatContext, self.rng.choice(pool))
        label_round = LabelRound(player_id=player.id, sticker_id=context.sticker_id, context_id=context.id,
                                 language=player.language, created_at=self.clock())
        session.add(label_round)
        return label_round

    def _new_retrieval_task(self, session: Session, player: Player) -> RetrievalTask | None:
        language = player.language
        task = None
        if self.rng.random() >= self.settings.gold_rate:
            task = self._task_from_submitted_round(session, player)
        if task is None:
            task = self._gold_task(session, player) or self._task_from_submitted_round(session, player)
        if task is None:
            return None
        task.seed = self.rng.getrandbits(62)
        task.candidate_ids = self._candidates(session, language, task.sticker_id, task.query_ids, task.seed)
        session.add(task)
        session.flush()
        for query_id in task.query_ids:
            session.add(TaskQuery(task_id=task.id, query_id=query_id))
        return task

    def _already_targeted(self, player_id: int):
        return select(RetrievalTask.sticker_id).where(RetrievalTask.retriever_id == player_id)

    def _task_from_submitted_round(self, session: Session, player: Player) -> RetrievalTask | None:
        candidates = session.exec(
            select(LabelRound).where(
                LabelRound.language == player.language,
                LabelRound.status == RoundStatus.SUBMITTED,
                LabelRound.player_id != player.id,
                LabelRound.retrieval_count < self.settings.retrievals_per_round,
                # never a sticker the player labeled, nor one they already looked for
                col(LabelRound.sticker_id).not_in(self._labeled_sticker_ids(player.id)),
                col(LabelRound.sticker_id).not_in(self._already_targeted(player.id)),
            ).order_by(LabelRound.retrieval_count, LabelRound.submitted_at, LabelRound.id).limit(1)
        ).all()
        if not candidates:
            return None
        label_round = candidates[0]
        # Reserve the round; the conditional update makes two players unable to over-book it.
        reserved = session.execute(
            update(LabelRound)
            .where(LabelRound.id == label_round.id,
                   LabelRound.retrieval_count < self.settings.retrievals_per_round)
            .values(retrieval_count=LabelRound.retrieval_count + 1)
        ).rowcount
        if not reserved:
            return None
        query_ids = session.exec(
            select(Query.id).where(Query.label_round_id == label_round.id,
                                   col(Query.status) != QueryStatus.DISCARDED).order_by(Query.id)
        ).all()
        return RetrievalTask(retriever_id=player.id, label_round_id=label_round.id,
                             sticker_id=label_round.sticker_id, language=player.language,
                             query_ids=list(query_ids), created_at=self.clock())

    def _gold_task(self, session: Session, player: Player) -> RetrievalTask | None:
        """A known-answer task from validated data: checks the retriever, not the labeler."""
        index = self.indexes[player.language]
        if len(index) < self.settings.candidates:
            return None
        excluded = set(session.exec(self._labeled_sticker_ids(player.id)).all())
        excluded |= set(session.exec(self._already_targeted(player.id)).all())
        pool = [s for s in index.sticker_ids() if s not in excluded]
        if not pool:
            return None
        sticker_id = self.rng.choice(pool)
        queries = session.exec(
            select(Query.id).where(Query.sticker_id == sticker_id, Query.language == player.language,
                                   col(Query.status).in_(USABLE_QUERY_STATUSES)).order_by(Query.id)
        ).all()
        if not queries:
            return None
        shown = sorted(self.rng.sample(list(queries), min(3, len(queries))))
        return RetrievalTask(retriever_id=player.id, sticker_id=sticker_id, language=player.language,
                             query_ids=shown, is_gold=True, created_at=self.clock())

    def _candidates(self, session: Session, language: str, target: int, query_ids: Sequence[int],
                    seed: int) -> list[int]:
        """Target + hard negatives (BM25 top hits for the shown queries) + random same-language
        stickers, shuffled by the task's seed so the same task always shows the same grid."""
        total = self.settings.candidates
        rng = random.Random(seed)
        texts = session.exec(select(Query.text, Query.corrected_text).where(col(Query.id).in_(query_ids))).all()
        tokens = [t for text, corrected in texts for t in tokenize(corrected or text)]
        hard_wanted = max(0, total - 1 - self.settings.random_distractors)
        result = self.indexes[language].search(tokens, k=hard_wanted + 1)
        chosen = [h.sticker_id for h in result.hits if h.sticker_id != target][:hard_wanted]
        taken = set(chosen) | {target}
        need = total - 1 - len(chosen)
        if need:
            pool = session.exec(
                select(ChatContext.sticker_id).where(ChatContext.language == language,
                                                     col(ChatContext.status) != ContextStatus.REJECTED)
            ).all()
            pool = sorted(set(pool) | set(self.indexes[language].sticker_ids()))
            rng.shuffle(pool)
            for sticker_id in pool:
                if need == 0:
                    break
                if sticker_id not in taken:
                    chosen.append(sticker_id)
                    taken.add(sticker_id)
                    need -= 1
        candidates = [target, *chosen]
        rng.shuffle(candidates)
        return candidates

    # ------------------------------------------------------------------ labeler round
    def _own_open_round(self, session: Session, player_id: int, round_id: int) -> LabelRound:
        label_round = session.exec(select(LabelRound).where(LabelRound.id == round_id).with_for_update()).first()
        if label_round is None or label_round.player_id != player_id:
            raise GameError("not_your_round")
        if label_round.status != RoundStatus.OPEN:
            raise GameError("round_closed", label_round.status)
        return label_round

    def add_query(self, player_id: int, round_id: int, text: str | None) -> PreviewView:
        """Add one query to an open round and return the preliminary search result for it."""
        with session_scope(self.db) as session:
            self._playable_player(session, player_id)
            label_round = self._own_open_round(session, player_id, round_id)
            try:
                cleaned = clean_query_text(text, max_chars=self.settings.max_query_chars)
            except QueryTextError as error:
                raise GameError(error.code, error.detail) from None
            normalized = normalize_query(cleaned)
            if self._is_visual_only(cleaned, label_round.language):
                raise GameError("visual_only")
            own = session.exec(select(Query).where(Query.label_round_id == round_id)).all()
            if any(q.normalized_text == normalized for q in own):
                raise GameError("repeat_own")
            if len(own) >= self.settings.max_queries_per_round:
                raise GameError("too_many_queries", str(self.settings.max_queries_per_round))
            # Taboo (ESP Game): a query already collected for this sticker is refused.
            session.exec(select(Sticker.id).where(Sticker.id == label_round.sticker_id).with_for_update())
            taboo = session.exec(select(Query.id).where(
                Query.sticker_id == label_round.sticker_id, Query.language == label_round.language,
                Query.normalized_text == normalized, col(Query.status) != QueryStatus.DISCARDED,
            ).limit(1)).first()
            if taboo is not None:
                raise GameError("taboo")
            query = Query(sticker_id=label_round.sticker_id, language=label_round.language, text=cleaned,
                          normalized_text=normalized, author_id=player_id, label_round_id=round_id,
                          source=QuerySource.LABELER, status=QueryStatus.DRAFT, created_at=self.clock())
            session.add(query)
            session.flush()
            return self._preview(session, query, label_round.sticker_id)

    def preview(self, language: str, text: str, target: int | None = None):
        """A search without side effects (the preview of any text): only stickers sharing a word
        other than a function word with the text are found (BM25 scores unchanged)."""
        tokens = tokenize(text)
        return self.indexes[language].search_sharing(tokens, content_tokens(tokens), k=self.settings.preview_hits,
                                                     target=target)

    def _preview(self, session: Session, query: Query, target: int) -> PreviewView:
        """The labeler's honest preview of one query: where the sticker stands among all stickers
        of the language, the grid, where the sticker is in it, and why it has no rank."""
        index = self.indexes[query.language]
        text = query.corrected_text or query.text
        result = self.preview(query.language, text, target)
        stickers = self._stickers(session, [h.sticker_id for h in result.hits])
        position = next((i for i, s in enumerate(stickers, 1) if s.id == target), None)
        if result.target_rank is not None:
            verdict = "ranked"
        elif target in index and set(index.document(target)) & set(tokenize(text)):
            verdict = "function_words"  # shares words with the sticker's queries, but only those
        else:
            verdict = "not_found"
        return PreviewView(QueryView(query.id, query.text, query.status), result.target_rank, stickers,
                           total=len(index), verdict=verdict, target_position=position)

    def _is_visual_only(self, text: str, language: str) -> bool:
        """Only colour, shape and what is drawn (and function words), in either language: refused
        with the paper's advice (error "visual_only") rather than stored without a rank, so the
        dataset never holds them and the player writes the meaning instead."""
        return is_visual_only(text)

    def remove_query(self, player_id: int, round_id: int, query_id: int) -> None:
        with session_scope(self.db) as session:
            self._lock_player(session, player_id)
            self._own_open_round(session, player_id, round_id)
            removed = session.execute(delete(Query).where(Query.id == query_id, Query.label_round_id == round_id,
                                                          Query.status == QueryStatus.DRAFT)
                                      .execution_options(synchronize_session=False)).rowcount
            if not removed:
                raise GameError("not_your_query")

    def submit_round(self, player_id: int, round_id: int) -> SubmitResult:
        with session_scope(self.db) as session:
            self._playable_player(session, player_id)
            label_round = self._own_open_round(session, player_id, round_id)
            drafts = session.execute(update(Query).where(Query.label_round_id == round_id,
                                                         Query.status == QueryStatus.DRAFT)
                                     .values(status=QueryStatus.PENDING).returning(Query.id)
                                     .execution_options(synchronize_session=False)).scalars().all()
            if not drafts:
                raise GameError("no_queries")
            submitted = session.execute(update(LabelRound).where(LabelRound.id == round_id,
                                                                 LabelRound.status == RoundStatus.OPEN)
                                        .values(status=RoundStatus.SUBMITTED, submitted_at=self.clock())
                                        .execution_options(synchronize_session=False)).rowcount
            if not submitted:
                raise GameError("round_closed")
            if label_round.context_id is not None:
                self._count_on_context(session, label_round.context_id, labels=len(drafts))
            self._finish_task(session, player_id, LABELER, label_round.language)
            return SubmitResult(round_id, len(drafts))

    def skip_round(self, player_id: int, round_id: int) -> None:
        with session_scope(self.db) as session:
            self._lock_player(session, player_id)
            label_round = self._own_open_round(session, player_id, round_id)
            if not self._close_rounds(session, RoundStatus.SKIPPED, LabelRound.id == round_id):
                raise GameError("round_closed")
            if label_round.context_id is not None:
                self._count_on_context(session, label_round.context_id, skips=1)
            self._finish_task(session, player_id, LABELER, label_round.language, counts=False)

    def _close_rounds(self, session: Session, status: str, *where) -> list[int]:
        """Close the open rounds matching `where`. Only the rounds this UPDATE changed lose their
        drafts: a round submitted meanwhile keeps its queries."""
        closed = session.execute(update(LabelRound).where(LabelRound.status == RoundStatus.OPEN, *where)
                                 .values(status=status).returning(LabelRound.id)
                                 .execution_options(synchronize_session=False)).scalars().all()
        if closed:
            session.execute(delete(Query).where(col(Query.label_round_id).in_(closed),
                                                Query.status == QueryStatus.DRAFT)
                            .execution_options(synchronize_session=False))
        return list(closed)

    def _count_on_context(self, session: Session, context_id: int, labels: int = 0, skips: int = 0) -> None:
        """Counters and priority change in SQL, from the row's current values: concurrent rounds on
        one sticker all count."""
        label_count, skip_count = ChatContext.label_count + labels, ChatContext.skip_count + skips
        session.execute(update(ChatContext).where(ChatContext.id == context_id)
                        .values(label_count=label_count, skip_count=skip_count,
                                priority=context_priority(label_count, skip_count))
                        .execution_options(synchronize_session=False))

    # ------------------------------------------------------------------ retriever task
    def _own_open_task(self, session: Session, player_id: int, task_id: int) -> RetrievalTask:
        """The player's open task, locked for this transaction."""
        task = session.exec(select(RetrievalTask).where(RetrievalTask.id == task_id).with_for_update()).first()
        if task is None or task.retriever_id != player_id:
            raise GameError("not_your_task")
        if task.status != TaskStatus.OPEN:
            raise GameError("task_closed", task.status)
        return task

    def submit_ranking(self, player_id: int, task_id: int, picks: Sequence[int]) -> RankingOutcome:
        """Rank up to three candidates (sticker ids, best first). Scores exactly once."""
        return self._answer(player_id, task_id, picks)

    def _answer(self, player_id: int, task_id: int, picks: Sequence[int] | None) -> RankingOutcome:
        """Answer the task with `picks`, or (None) with the picks drafted on it, read under its lock."""
        with session_scope(self.db) as session:
            self._playable_player(session, player_id)
            task = self._own_open_task(session, player_id, task_id)
            picks = self._checked_picks(task, list(task.picks) if picks is None else picks)
            hit_rank = picks.index(task.sticker_id) + 1 if task.sticker_id in picks else None
            now = self.clock()
            won = session.execute(
                update(RetrievalTask)
                .where(RetrievalTask.id == task_id, RetrievalTask.retriever_id == player_id,
                       RetrievalTask.status == TaskStatus.OPEN)
                .values(status=TaskStatus.ANSWERED, picks=picks, hit_rank=hit_rank, answered_at=now)
            ).rowcount
            if not won:
                raise GameError("task_closed", "answered")
            # the UPDATE also set status, picks and hit_rank on `task` (synchronize_session)
            outcome = self._score(session, task)
            self._finish_task(session, player_id, RETRIEVER, task.language)
            return outcome

    def toggle_pick(self, player_id: int, task_id: int, position: int) -> RetrievalTaskView:
        """Grid button `position` (1-based): adds that candidate as the next rank, or removes it."""
        with session_scope(self.db) as session:
            self._playable_player(session, player_id)
            task = self._own_open_task(session, player_id, task_id)
            if not isinstance(position, int) or not 1 <= position <= len(task.candidate_ids):
                raise GameError("pick_not_candidate")
            sticker_id = task.candidate_ids[position - 1]
            picks = list(task.picks)
            if sticker_id in picks:
                picks.remove(sticker_id)
            elif len(picks) >= self.settings.max_picks:
                raise GameError("too_many_picks", str(self.settings.max_picks))
            else:
                picks.append(sticker_id)
            task.picks = picks
            session.add(task)
            session.flush()
            return self._retrieval_view(session, task)

    def undo_pick(self, player_id: int, task_id: int) -> RetrievalTaskView:
        with session_scope(self.db) as session:
            self._lock_player(session, player_id)
            task = self._own_open_task(session, player_id, task_id)
            task.picks = list(task.picks)[:-1]
            session.add(task)
            session.flush()
            return self._retrieval_view(session, task)

    def submit_drafted_ranking(self, player_id: int, task_id: int) -> RankingOutcome:
        """Submit the picks made with toggle_pick: those on the task when its lock is taken, so a
        pick that committed just before is never lost."""
        return self._answer(player_id, task_id, None)

    def _checked_picks(self, task: RetrievalTask, picks: Sequence[int]) -> list[int]:
        if not isinstance(picks, list | tuple) or not picks:
            raise GameError("no_picks")
        if len(picks) > self.settings.max_picks:
            raise GameError("too_many_picks", str(self.settings.max_picks))
        if any(not isinstance(p, int) or isinstance(p, bool) for p in picks):
            raise GameError("bad_pick")
        if len(set(picks)) != len(picks):
            raise GameError("repeated_pick")
        if any(p not in task.candidate_ids for p in picks):
            raise GameError("pick_not_candidate")
        return list(picks)

    def _award(self, session: Session, key: str, player_id: int, language: str, points: int, reason: str,
               task_id: int | None = None, query_id: int | None = None) -> bool:
        if points <= 0:
            return False
        inserted = insert_ignoring_conflicts(session, ScoreEvent.__table__, [dict(
            idempotency_key=key, player_id=player_id, language=language, points=points, reason=reason,
            retrieval_task_id=task_id, query_id=query_id, created_at=self.clock())], ["idempotency_key"])
        return inserted == 1

    def notify(self, session: Session, key: str, kind: str, payload: dict, player_id: int | None = None,
                chat_id: int | None = None) -> None:
        """Queue a message for a player or a chat in this transaction (core/outbox.py delivers it)."""
        self.outbox.enqueue(session, key, kind, payload, player_id=player_id, chat_id=chat_id)

    def _score(self, session: Session, task: RetrievalTask) -> RankingOutcome:
        points_table = self.settings.points_by_rank
        retriever_points = points_table[task.hit_rank - 1] if task.hit_rank else 0
        self._award(session, f"task:{task.id}:retriever", task.retriever_id, task.language, retriever_points,
                    "gold_hit" if task.is_gold else "retriever_hit", task_id=task.id)
        validated, to_review = [], False
        if task.is_gold:
            self._check_gold(session, task.retriever_id)
        else:
            label_round = session.get(LabelRound, task.label_round_id)
            labeler_id = label_round.player_id
            if task.hit_rank:
                self._award(session, f"task:{task.id}:labeler", labeler_id, task.language, retriever_points,
                            "labeler_hit", task_id=task.id)
            if task.hit_rank:
                validated = self._count_hit(session, task)
            else:
                to_review = bool(session.execute(
                    update(Query).where(col(Query.id).in_(task.query_ids), Query.status == QueryStatus.PENDING)
                    .values(status=QueryStatus.NEEDS_REVIEW).returning(Query.id)
                    .execution_options(synchronize_session=False)).all())
            # The labeler's own queries name the sticker in the notice: they know it by them.
            texts = dict(session.exec(select(Query.id, Query.text).where(col(Query.id).in_(task.query_ids))).all())
            self.notify(session, f"feedback:task:{task.id}", "feedback_hit" if task.hit_rank else "feedback_miss",
                         {"task_id": task.id, "round_id": label_round.id, "sticker_id": task.sticker_id,
                          "rank": task.hit_rank, "points": retriever_points, "language": task.language,
                          "queries": [texts[i] for i in task.query_ids if i in texts]},
                         player_id=labeler_id)
        target = self._stickers(session, [task.sticker_id])[0]
        return RankingOutcome(task.id, task.hit_rank, target, retriever_points, validated, to_review)

    def _count_hit(self, session: Session, task: RetrievalTask) -> list[int]:
        """The retriever found the sticker from the task's queries: pending or disputed ones become
        validated, and each query counts this retriever once. Both are conditional UPDATEs on the
        row's current values, so concurrent hits all count, a moderator's concurrent decision stands,
        and the resonance bonus follows the count the database returns. One query at a time, in id
        order, so concurrent hits lock the rows in the same order."""
        now, validated = self.clock(), []
        for query_id in sorted(task.query_ids):
            if session.execute(update(Query).where(
                    Query.id == query_id, col(Query.status).in_((QueryStatus.PENDING, QueryStatus.NEEDS_REVIEW)))
                    .values(status=QueryStatus.VALIDATED, validated_at=now).returning(Query.id)
                    .execution_options(synchronize_session=False)).first():
                validated.append(query_id)
            # Resonance counts distinct retrievers. The retriever's row is locked by the caller, so
            # their own earlier hits are all committed and visible here.
            earlier_hit = (select(TaskQuery.task_id)
                           .join(RetrievalTask, col(RetrievalTask.id) == TaskQuery.task_id)
                           .where(TaskQuery.query_id == query_id, RetrievalTask.retriever_id == task.retriever_id,
                                  RetrievalTask.id != task.id, RetrievalTask.status == TaskStatus.ANSWERED,
                                  col(RetrievalTask.hit_rank).is_not(None), col(RetrievalTask.is_gold).is_(False)))
            counted = session.execute(update(Query).where(Query.id == query_id, ~earlier_hit.exists())
                                      .values(hit_count=Query.hit_count + 1)
                                      .returning(Query.hit_count, Query.author_id)
                                      .execution_options(synchronize_session=False)).first()
            if counted and counted.author_id and counted.hit_count >= self.settings.resonance_retrievers:
                self._award(session, f"resonance:{query_id}", counted.author_id, task.language,
                            self.settings.resonance_bonus, "resonance", query_id=query_id)
        if validated:
            rows = session.exec(select(Query.id, Query.language, Query.sticker_id, Query.text, Query.corrected_text)
                                .where(col(Query.id).in_(validated))).all()
            for query_id, _language, _sticker, text, corrected in rows:  # tokenized once, not at every start-up
                session.execute(update(Query).where(Query.id == query_id)
                                .values(search_tokens=search_tokens(corrected or text))
                                .execution_options(synchronize_session=False))
            for language in {row.language for row in rows}:
                record_search_change(session, language, sorted({row.sticker_id for row in rows
                                                                if row.language == language}), "validated")
        return validated

    def _check_gold(self, session: Session, player_id: int) -> None:
        answered, hits = session.exec(select(func.count(), func.count(RetrievalTask.hit_rank)).where(
            RetrievalTask.retriever_id == player_id, RetrievalTask.is_gold,
            RetrievalTask.status == TaskStatus.ANSWERED)).one()
        failures = answered - hits
        if failures < self.settings.gold_flag_failures or hits / answered >= self.settings.gold_flag_accuracy:
            return
        flagged = session.execute(update(Player).where(Player.id == player_id, col(Player.flagged).is_(False))
                                  .values(flagged=True)).rowcount
        if flagged:
            player = session.get(Player, player_id)
            self.notify(session, f"flag:{player_id}", "moderator_flag",
                         {"player_id": player_id, "pseudonym": player.pseudonym, "gold_answered": answered,
                          "gold_hits": hits})

    def skip_task(self, player_id: int, task_id: int) -> None:
        with session_scope(self.db) as session:
            self._lock_player(session, player_id)
            task = self._own_open_task(session, player_id, task_id)
            if not self._close_tasks(session, TaskStatus.SKIPPED, RetrievalTask.id == task_id,
                                     answered_at=self.clock()):
                raise GameError("task_closed", "answered")
            self._finish_task(session, player_id, RETRIEVER, task.language, counts=False)

    def _close_tasks(self, session: Session, status: str, *where, **values) -> list[int]:
        """Close the open tasks matching `where`; only the tasks this UPDATE changed give their
        round's retrieval slot back, so an answered or skipped task is never touched or released twice."""
        closed = session.execute(update(RetrievalTask).where(RetrievalTask.status == TaskStatus.OPEN, *where)
                                 .values(status=status, **values)
                                 .returning(RetrievalTask.id, RetrievalTask.label_round_id)
                                 .execution_options(synchronize_session=False)).all()
        for _task_id, label_round_id in sorted(closed, key=lambda row: row.label_round_id or 0):
            self._release_round(session, label_round_id)
        return [task_id for task_id, _ in closed]

    def _release_round(self, session: Session, label_round_id: int | None) -> None:
        if label_round_id is not None:
            session.execute(update(LabelRound).where(LabelRound.id == label_round_id,
                                                     LabelRound.retrieval_count > 0)
                            .values(retrieval_count=LabelRound.retrieval_count - 1))

    def suggest_query(self, player_id: int, task_id: int, sticker_id: int, text: str | None) -> QueryView:
        """A retriever proposes a query for a candidate; it waits for a later retrieval like any other."""
        with session_scope(self.db) as session:
            self._playable_player(session, player_id)
            task = session.get(RetrievalTask, task_id)
            if task is None or task.retriever_id != player_id:
                raise GameError("not_your_task")
            if sticker_id not in task.candidate_ids:
                raise GameError("pick_not_candidate")
            try:
                cleaned = clean_query_text(text, max_chars=self.settings.max_query_chars)
            except QueryTextError as error:
                raise GameError(error.code, error.detail) from None
            normalized = normalize_query(cleaned)
            if self._is_visual_only(cleaned, task.language):
                raise GameError("visual_only")
            session.exec(select(Sticker.id).where(Sticker.id == sticker_id).with_for_update())
            if session.exec(select(Query.id).where(
                    Query.sticker_id == sticker_id, Query.language == task.language,
                    Query.normalized_text == normalized, col(Query.status) != QueryStatus.DISCARDED)).first():
                raise GameError("taboo")
            label_round = LabelRound(kind=RoundKind.SUGGESTION, player_id=player_id, sticker_id=sticker_id,
                                     language=task.language, status=RoundStatus.SUBMITTED,
                                     created_at=self.clock(), submitted_at=self.clock())
            session.add(label_round)
            session.flush()
            query = Query(sticker_id=sticker_id, language=task.language, text=cleaned, normalized_text=normalized,
                          author_id=player_id, label_round_id=label_round.id, source=QuerySource.SUGGESTION,
                          status=QueryStatus.PENDING, created_at=self.clock())
            session.add(query)
            session.flush()
            return QueryView(query.id, query.text, query.status)

    # ------------------------------------------------------------------ sessions, expiry
    def _finish_task(self, session: Session, player_id: int, role: str, language: str, counts: bool = True) -> None:
        player = session.get(Player, player_id)
        player.last_role = role
        session.add(player)
        if not counts:
            return
        # The caller holds the player's row lock, so which session this task belongs to cannot race;
        # the count itself changes in SQL.
        now = self.clock()
        gap = timedelta(minutes=self.settings.session_gap_minutes)
        latest = session.exec(select(PlaySession.id).where(PlaySession.player_id == player_id)
                              .order_by(col(PlaySession.id).desc()).limit(1)).first()
        continued = latest is not None and session.execute(
            update(PlaySession).where(PlaySession.id == latest, PlaySession.language == language,
                                      PlaySession.last_activity_at >= now - gap)
            .values(task_count=PlaySession.task_count + 1, last_activity_at=now)
            .execution_options(synchronize_session=False)).rowcount
        if not continued:
            session.add(PlaySession(player_id=player_id, language=language, started_at=now, last_activity_at=now,
                                    task_count=1))

    def expire_abandoned(self) -> dict[str, int]:
        """Close rounds and tasks left open past the expiry time; their slots go back to the pool."""
        cutoff = self.clock() - timedelta(minutes=self.settings.task_expiry_minutes)
        # One conditional UPDATE per table: work answered, skipped or submitted meanwhile no longer
        # matches `status = 'open'` (PostgreSQL re-checks a row it waited for), and only the rows
        # changed here lose their drafts or give their slot back.
        with session_scope(self.db) as session:
            rounds = self._close_rounds(session, RoundStatus.EXPIRED, LabelRound.created_at < cutoff)
            tasks = self._close_tasks(session, TaskStatus.EXPIRED, RetrievalTask.created_at < cutoff)
        # Feedback held for a player's next screen does not wait for ever on a player who walked away.
        released = self.outbox.release_held(
            select(LabelRound.player_id).where(LabelRound.status == RoundStatus.OPEN),
            select(RetrievalTask.retriever_id).where(RetrievalTask.status == TaskStatus.OPEN))
        return {"rounds": len(rounds), "tasks": len(tasks), "notices_released": released}

    def _expire_open_work(self, session: Session, player_id: int) -> None:
        self._close_rounds(session, RoundStatus.EXPIRED, LabelRound.player_id == player_id)
        self._close_tasks(session, TaskStatus.EXPIRED, RetrievalTask.retriever_id == player_id)

    # ------------------------------------------------------------------ views
    def _stickers(self, session: Session, sticker_ids: Sequence[int]) -> list[StickerView]:
        if not sticker_ids:
            return []
        rows = {s.id: s for s in session.exec(select(Sticker).where(col(Sticker.id).in_(list(sticker_ids))))}
        return [StickerView(s.id, s.key, s.file_path, s.format) for s in (rows[i] for i in sticker_ids)]

    def _label_view(self, session: Session, label_round: LabelRound) -> LabelTaskView:
        context = session.get(ChatContext, label_round.context_id) if label_round.context_id else None
        messages = [ContextMessage(m.get("sender", "?"), m.get("text", "")) for m in (context.messages if context else [])]
        queries = session.exec(select(Query).where(Query.label_round_id == label_round.id).order_by(Query.id)).all()
        previews = [self._preview(session, q, label_round.sticker_id) for q in queries]
        return LabelTaskView(label_round.id, label_round.language, self._stickers(session, [label_round.sticker_id])[0],
                             messages, [QueryView(q.id, q.text, q.status) for q in queries], previews=previews,
                             taken=self._taken(session, label_round, {q.normalized_text for q in queries}))

    def _taken(self, session: Session, label_round: LabelRound, own: set[str]) -> list[str]:
        """The queries the taboo rule refuses for this round, most frequent first (then oldest),
        at most TABOO_SHOWN: every non-discarded query of the sticker in the language by anyone
        but the player, seed queries and other players' drafts included, since a draft refuses
        the same text too. One text per normalized form (its first writing)."""
        rows = session.exec(select(Query.normalized_text, Query.text).where(
            Query.sticker_id == label_round.sticker_id, Query.language == label_round.language,
            col(Query.status) != QueryStatus.DISCARDED,
            or_(col(Query.author_id).is_(None), Query.author_id != label_round.player_id),
        ).order_by(Query.id)).all()
        counts: dict[str, int] = {}
        first: dict[str, str] = {}
        for normalized, text in rows:
            if normalized in own:
                continue
            counts[normalized] = counts.get(normalized, 0) + 1
            first.setdefault(normalized, text)
        order = sorted(first, key=lambda n: -counts[n])  # stable: equal counts stay oldest first
        return [first[n] for n in order[:TABOO_SHOWN]]

    def _retrieval_view(self, session: Session, task: RetrievalTask) -> RetrievalTaskView:
        texts = dict(session.exec(select(Query.id, Query.text).where(col(Query.id).in_(task.query_ids))).all())
        return RetrievalTaskView(task.id, task.language, [texts[i] for i in task.query_ids if i in texts],
                                 self._stickers(session, task.candidate_ids), list(task.picks))

    def label_task(self, player_id: int, round_id: int) -> LabelTaskView:
        with read_session(self.db) as session:
            label_round = session.get(LabelRound, round_id)
            if label_round is None or label_round.player_id != player_id:
                raise GameError("not_your_round")
            return self._label_view(session, label_round)

    # ------------------------------------------------------------------ scores
    LEADERBOARD_DAYS = 7  # /top, /me and the streak's "this week" are the last 7 days

    def player_stats(self, player_id: int) -> PlayerStats:
        """Points all time and in the last 7 days (the period /top shows), rank in that period among
        the players /top lists, accuracy and streak as a retriever."""
        with read_session(self.db) as session:
            player = session.get(Player, player_id)
            if player is None:
                raise GameError("unknown_player")
            points = session.exec(select(func.coalesce(func.sum(ScoreEvent.points), 0))
                                  .where(ScoreEvent.player_id == player_id)).one()
            outcomes = session.exec(select(RetrievalTask.hit_rank).where(
                RetrievalTask.retriever_id == player_id, RetrievalTask.status == TaskStatus.ANSWERED)
                .order_by(col(RetrievalTask.answered_at).desc(), col(RetrievalTask.id).desc())).all()
            streak = 0
            for rank in outcomes:
                if rank is None:
                    break
                streak += 1
            hits = sum(1 for r in outcomes if r is not None)
            since = self.clock() - timedelta(days=self.LEADERBOARD_DAYS)
            period_points, period_rank = self.standing_in(session, player, since)
            return PlayerStats(player_id, int(points), period_rank, hits / len(outcomes) if outcomes else None,
                               len(outcomes), streak, period_points, period_rank)

    def standing_in(self, session: Session, player: Player, since: datetime,
                  until: datetime | None = None) -> tuple[int, int | None]:
        """The player's points in [since, until) in their language, and their place among the players
        a leaderboard lists (None without points)."""
        if player.language is None:
            return 0, None
        window = [ScoreEvent.language == player.language, ScoreEvent.created_at >= since]
        if until is not None:
            window.append(ScoreEvent.created_at < until)
        mine = int(session.exec(select(func.coalesce(func.sum(ScoreEvent.points), 0))
                                .where(ScoreEvent.player_id == player.id, *window)).one())
        if mine <= 0:
            return 0, None
        totals = (select(ScoreEvent.player_id, func.sum(ScoreEvent.points).label("total"))
                  .join(Player, Player.id == ScoreEvent.player_id).where(*window, *self.listable())
                  .group_by(ScoreEvent.player_id).subquery())
        above = session.exec(select(func.count()).select_from(totals).where(totals.c.total > mine)).one()
        return mine, above + 1

    @staticmethod
    def listable():
        """Who may appear on a leaderboard or in a prize list: not banned, consent not withdrawn."""
        return [col(Player.banned).is_(False), col(Player.consent_withdrawn_at).is_(None)]

    def tasks_finished(self, player_id: int) -> int:
        """Label rounds submitted and retrievals answered by the player (the screens' round number)."""
        with read_session(self.db) as session:
            rounds = session.exec(select(func.count()).select_from(LabelRound).where(
                LabelRound.player_id == player_id, LabelRound.status == RoundStatus.SUBMITTED)).one()
            answered = session.exec(select(func.count()).select_from(RetrievalTask).where(
                RetrievalTask.retriever_id == player_id, RetrievalTask.status == TaskStatus.ANSWERED)).one()
            return int(rounds) + int(answered)

    def leaderboard(self, language: str, since: datetime | None = None, limit: int = 10) -> list[LeaderboardRow]:
        """The top players by points, shown by nickname; banned players and those who withdrew
        their consent are never listed."""
        with read_session(self.db) as session:
            total = func.sum(ScoreEvent.points).label("total")
            statement = (select(Player.id, Player.nickname, total)
                         .join(Player, Player.id == ScoreEvent.player_id)
                         .where(ScoreEvent.language == language, *self.listable()))
            if since is not None:
                statement = statement.where(ScoreEvent.created_at >= since)
            rows = session.exec(statement.group_by(Player.id, Player.nickname)
                                .order_by(total.desc(), Player.id).limit(limit)).all()
            return [LeaderboardRow(i + 1, pid, nickname_of(pid, nickname, language), int(points))
                    for i, (pid, nickname, points) in enumerate(rows)]

    # ------------------------------------------------------------------ moderation
    def require_moderator(self, session: Session, moderator_id: int) -> Player:
        moderator = session.get(Player, moderator_id)
        if moderator is None or not moderator.is_moderator:
            raise GameError("not_moderator")
        return moderator

    def pending_reviews(self, moderator_id: int, language: str | None = None, limit: int = 10,
                        after_id: int = 0) -> list[ReviewItem]:
        with read_session(self.db) as session:
            self.require_moderator(session, moderator_id)
            statement = select(Query).where(Query.status == QueryStatus.NEEDS_REVIEW, Query.id > after_id)
            if language:
                statement = statement.where(Query.language == language)
            items = []
            for query in session.exec(statement.order_by(Query.id).limit(limit)).all():
                round_queries = session.exec(select(Query).where(Query.label_round_id == query.label_round_id)
                                             .order_by(Query.id)).all()
                missed = self._missed_task(session, query.label_round_id)
                author = session.get(Player, query.author_id) if query.author_id else None
                items.append(ReviewItem(
                    QueryView(query.id, query.text, query.status), query.language,
                    self._stickers(session, [query.sticker_id])[0],
                    [QueryView(q.id, q.text, q.status) for q in round_queries],
                    self._stickers(session, missed.picks) if missed else [],
                    author.pseudonym if author else None))
            return items

    @staticmethod
    def _missed_task(session: Session, round_id: int | None) -> RetrievalTask | None:
        return session.exec(select(RetrievalTask).where(
            RetrievalTask.label_round_id == round_id,
            RetrievalTask.status == TaskStatus.ANSWERED, col(RetrievalTask.hit_rank).is_(None))
            .order_by(col(RetrievalTask.id).desc())).first()

    def review_round(self, moderator_id: int, language: str | None = None, index: int = 0,
                     round_id: int | None = None) -> ReviewRound | None:
        """One round of the review queue: the `index`-th (0-based) of the rounds with queries waiting
        for a decision, in `language` if given; or the round `round_id`, wherever it stands. Rounds a
        moderator skipped come after all others, oldest skip first."""
        with read_session(self.db) as session:
            self.require_moderator(session, moderator_id)
            skipped = func.max(Query.review_skipped_at)
            waiting = select(Query.label_round_id, skipped.label("skipped"), func.min(Query.id).label("first")).where(
                Query.status == QueryStatus.NEEDS_REVIEW)
            if language:
                waiting = waiting.where(Query.language == language)
            order = waiting.group_by(Query.label_round_id).subquery()
            queue = session.execute(select(order.c.label_round_id).order_by(
                order.c.skipped.is_not(None), order.c.skipped, order.c.first)).scalars().all()
            if round_id is not None:
                if round_id not in queue:
                    return self._review_view(session, round_id, 0, len(queue))
                index = queue.index(round_id)
            if not queue:
                return None
            index = max(0, min(index, len(queue) - 1))
            return self._review_view(session, queue[index], index + 1, len(queue))

    def _review_view(self, session: Session, round_id: int, position: int, waiting: int) -> ReviewRound | None:
        label_round = session.get(LabelRound, round_id)
        if label_round is None:
            return None
        queries = session.exec(select(Query).where(Query.label_round_id == round_id).order_by(Query.id)).all()
        context = session.get(ChatContext, label_round.context_id) if label_round.context_id else None
        messages = [ContextMessage(m.get("sender", "?"), m.get("text", "")) for m in (context.messages if context else [])]
        missed = self._missed_task(session, round_id)
        author = session.get(Player, label_round.player_id)
        return ReviewRound(round_id, label_round.language, self._stickers(session, [label_round.sticker_id])[0],
                           messages, [ReviewQuery(q.id, q.final_text, q.status, q.text) for q in queries],
                           self._stickers(session, missed.picks) if missed else [],
                           author.pseudonym if author else None, position, waiting)

    def review_round_of(self, moderator_id: int, query_id: int) -> int | None:
        """The labeler round a query belongs to (what its review screen shows)."""
        with read_session(self.db) as session:
            self.require_moderator(session, moderator_id)
            return session.exec(select(Query.label_round_id).where(Query.id == query_id)).first()

    def skip_review_round(self, moderator_id: int, round_id: int) -> None:
        """The round goes to the back of the review queue (for every moderator: the skip is kept)."""
        with session_scope(self.db) as session:
            self.require_moderator(session, moderator_id)
            skipped = session.execute(update(Query).where(Query.label_round_id == round_id,
                                                          Query.status == QueryStatus.NEEDS_REVIEW)
                                      .values(review_skipped_at=self.clock())).rowcount
            if not skipped:
                raise GameError("already_reviewed")

    def review_counts(self, moderator_id: int) -> dict[str, int]:
        with read_session(self.db) as session:
            self.require_moderator(session, moderator_id)
            rows = session.exec(select(Query.status, func.count()).group_by(Query.status)).all()
            counts = {status: 0 for status in QueryStatus}
            counts.update({status: n for status, n in rows})
            counts["contexts_waiting"] = session.exec(select(func.count()).where(
                ChatContext.status == ContextStatus.CANDIDATE).select_from(ChatContext)).one()
            return counts

    def _decide(self, moderator_id: int, query_id: int, action: str, new_status: str,
                corrected: str | None = None) -> QueryView:
        with session_scope(self.db) as session:
            moderator = self.require_moderator(session, moderator_id)
            query = session.get(Query, query_id)
            if query is None:
                raise GameError("unknown_query")
            values = {"status": new_status}
            if corrected is not None:
                values["corrected_text"] = corrected
            if new_status != QueryStatus.DISCARDED:
                values["validated_at"] = self.clock()
                values["search_tokens"] = search_tokens(corrected or query.final_text)
            decided = session.execute(update(Query).where(Query.id == query_id,
                                                          Query.status == QueryStatus.NEEDS_REVIEW)
                                      .values(**values)).rowcount
            if not decided:
                raise GameError("already_reviewed", query.status)
            session.add(Review(query_id=query_id, moderator_id=moderator.id, action=action,
                               old_text=query.text, new_text=corrected, created_at=self.clock()))
            session.flush()
            session.refresh(query)
            record_search_change(session, query.language, [query.sticker_id], action)
            self._report_review(session, query)
            return QueryView(query.id, query.final_text, query.status)

    def _report_review(self, session: Session, query: Query) -> None:
        """Once no query of the round waits for a moderator, its author hears every decision on it
        in one notice."""
        if query.author_id is None or query.label_round_id is None:
            return
        rows = session.exec(select(Query).where(Query.label_round_id == query.label_round_id)
                            .order_by(Query.id)).all()
        if any(q.status == QueryStatus.NEEDS_REVIEW for q in rows):
            return
        decisions = dict(session.exec(select(Review.query_id, Review.action).where(
            col(Review.query_id).in_([q.id for q in rows]))).all())
        decided = [{"text": q.text, "status": q.status, "corrected": q.corrected_text}
                   for q in rows if q.id in decisions]
        if decided:
            self.notify(session, f"review:round:{query.label_round_id}", "review_decided",
                        {"round_id": query.label_round_id, "language": query.language, "queries": decided},
                        player_id=query.author_id)

    def accept_query(self, moderator_id: int, query_id: int) -> QueryView:
        return self._decide(moderator_id, query_id, "accept", QueryStatus.ACCEPTED)

    def correct_query(self, moderator_id: int, query_id: int, text: str | None) -> QueryView:
        try:
            cleaned = clean_query_text(text, max_chars=self.settings.max_query_chars)
        except QueryTextError as error:
            raise GameError(error.code, error.detail) from None
        return self._decide(moderator_id, query_id, "correct", QueryStatus.CORRECTED, cleaned)

    def discard_query(self, moderator_id: int, query_id: int) -> QueryView:
        return self._decide(moderator_id, query_id, "discard", QueryStatus.DISCARDED)

    def pending_contexts(self, moderator_id: int, language: str | None = None, limit: int = 10) -> list[ChatContext]:
        with read_session(self.db) as session:
            self.require_moderator(session, moderator_id)
            statement = select(ChatContext).where(ChatContext.status == ContextStatus.CANDIDATE)
            if language:
                statement = statement.where(ChatContext.language == language)
            return list(session.exec(statement.order_by(ChatContext.id).limit(limit)).all())

    def review_context(self, moderator_id: int, context_id: int, approve: bool) -> None:
        with session_scope(self.db) as session:
            moderator = self.require_moderator(session, moderator_id)
            status = ContextStatus.APPROVED if approve else ContextStatus.REJECTED
            decided = session.execute(update(ChatContext).where(
                ChatContext.id == context_id, ChatContext.status == ContextStatus.CANDIDATE
            ).values(status=status)).rowcount
            if not decided:
                raise GameError("already_reviewed")
            session.add(Review(context_id=context_id, moderator_id=moderator.id,
                               action="approve_context" if approve else "reject_context", created_at=self.clock()))


__all__ = ["Game", "GameError", "LABELER", "RETRIEVER", "LANGUAGES", "context_priority"]
