"""Retrieval rounds in group chats: a round is posted in a group, the members race to pick the
sticker, and the round closes when its time is up or when every point place is taken.

- **A round** is a submitted label round that still needs retrievals, as in private play (its
  retrieval slot is reserved by the same conditional UPDATE), with a grid built the same way
  (`Assignment.candidates`). A group has at most one open round: posting takes the group's row lock.
- **A pick** is one per member (a unique key on round and player), refused unless the member
  started the bot privately and consented, and never by the round's own labeler. It is stored at
  once, so an answered press survives any crash; it is scored when the round closes.
- **Closing** is a conditional UPDATE (open -> closed) that exactly one caller wins, whoever calls
  it (the bots' background closer in any process, or the pick that took the last point place). The
  winner turns every pick, in pick order, into a judgment (`RetrievalTask`, setting='group') and
  scores it through `Scoring.score`, the private path: the first correct pickers get
  settings.rules.points_by_rank by speed (3/2/1), wrong pickers nothing, the labeler their feedback.
  The closed round's message is edited through the outbox (`NoticeKind.GROUP_ROUND_CLOSED`), so it
  is done even if the closing process dies right after.

Nothing from the group's conversation is read or stored: a group is its id, its bot, its language
and its pace.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, update
from sqlmodel import Session, col, select

from core.game.assignment import Assignment
from core.game.errors import GameError
from core.game.players import lock_player
from core.game.scoring import Scoring
from core.game.standings import LEADERBOARD_DAYS, ranked
from core.game.views import stickers
from core.nicknames import nickname_of
from core.outbox import Outbox
from core.views import LeaderboardRow, StickerView
from core.vocabulary import LANGUAGES, ErrorCode, NoticeKind
from storage.db import Transactions, insert_ignoring_conflicts
from storage.models import (
    GroupChat,
    GroupPick,
    GroupRound,
    GroupRoundStatus,
    GroupStatus,
    LabelRound,
    Player,
    Query,
    QueryStatus,
    RetrievalTask,
    RoundStatus,
    ScoreEvent,
    TaskQuery,
    TaskSetting,
    TaskStatus,
)
from storage.settings import Settings


@dataclass(frozen=True)
class GroupPickView:
    player_id: int
    nickname: str  # never the Telegram name
    position: int
    correct: bool | None = None  # known once the round is closed
    points: int = 0


@dataclass(frozen=True)
class GroupRoundView:
    round_id: int
    chat_id: int
    language: str
    queries: list[str]
    candidates: list[StickerView]
    picks: list[GroupPickView]  # in the order they were made
    is_open: bool
    seconds: int  # how long the round is open in all
    message_id: int | None = None
    answer: int | None = None  # the target's grid number, once closed
    places: tuple[int, ...] = ()  # the points of the first correct picks, fastest first


@dataclass(frozen=True)
class Posted:
    round: GroupRoundView
    new: bool  # False: a round was already open, and this is it


@dataclass(frozen=True)
class GroupTable:
    language: str
    week: list[LeaderboardRow]
    all_time: list[LeaderboardRow]


class GroupRounds:
    def __init__(self, db: Transactions, settings: Settings, clock: Callable[[], datetime], rng: random.Random,
                 assignment: Assignment, scoring: Scoring, outbox: Outbox) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.rng = rng
        self.assignment = assignment
        self.scoring = scoring
        self.outbox = outbox

    # ------------------------------------------------------------------ posting
    def post(self, chat_id: int, bot_key: str, player_id: int, language: str | None,
             fallback: str) -> Posted | None:
        """A new round in the group, or the one already open (`new` False); None when no round needs
        retrievals in the language. `language` (from `/round zh`) becomes the group's language;
        without it the group's, else `fallback` (the poster's)."""
        if language is not None and language not in LANGUAGES:
            raise GameError(ErrorCode.BAD_LANGUAGE, str(language))
        with self.db.write() as session:
            group = self._group(session, chat_id, bot_key)
            if language is not None and group.language != language:
                group.language = language
            group.status = GroupStatus.ACTIVE  # someone posts: the bot is there
            group.updated_at = self.clock()
            session.add(group)
            already = session.exec(select(GroupRound).where(GroupRound.chat_id == chat_id,
                                                            GroupRound.status == GroupRoundStatus.OPEN)).first()
            if already is not None:
                return Posted(self._view(session, already), new=False)
            chosen = self._label_round(session, group.language or fallback, player_id)
            if chosen is None:
                return None
            label_round, query_ids = chosen
            now, seed = self.clock(), self.rng.getrandbits(62)
            candidates = self.assignment.candidates(session, label_round.language, label_round.sticker_id,
                                                    query_ids, seed)
            posted = GroupRound(chat_id=chat_id, bot_key=bot_key, label_round_id=label_round.id,
                                sticker_id=label_round.sticker_id, language=label_round.language,
                                query_ids=query_ids, candidate_ids=candidates, seed=seed, posted_by=player_id,
                                opened_at=now, closes_at=now + timedelta(seconds=self.settings.rules.group_round_seconds))
            session.add(posted)
            session.flush()
            return Posted(self._view(session, posted), new=True)

    def _group(self, session: Session, chat_id: int, bot_key: str) -> GroupChat:
        """The group's row, created on first sight, locked for the transaction."""
        now = self.clock()
        insert_ignoring_conflicts(session, GroupChat.__table__, [dict(
            chat_id=chat_id, bot_key=bot_key, status=GroupStatus.ACTIVE, created_at=now, updated_at=now)],
            ["chat_id"])
        return session.exec(select(GroupChat).where(GroupChat.chat_id == chat_id).with_for_update()).one()

    def _label_round(self, session: Session, language: str, poster_id: int) -> tuple[LabelRound, list[int]] | None:
        """A submitted round that still needs retrievals (fewest first, as in private play), not the
        poster's own, with its slot reserved by a conditional UPDATE."""
        for label_round in session.exec(select(LabelRound).where(
                LabelRound.language == language, LabelRound.status == RoundStatus.SUBMITTED,
                LabelRound.player_id != poster_id,
                LabelRound.retrieval_count < self.settings.rules.retrievals_per_round,
        ).order_by(LabelRound.retrieval_count, LabelRound.submitted_at, LabelRound.id).limit(5)).all():
            query_ids = list(session.exec(select(Query.id).where(
                Query.label_round_id == label_round.id, col(Query.status) != QueryStatus.DISCARDED)
                .order_by(Query.id)).all())
            if not query_ids:
                continue
            if session.execute(update(LabelRound).where(
                    LabelRound.id == label_round.id,
                    LabelRound.retrieval_count < self.settings.rules.retrievals_per_round)
                    .values(retrieval_count=LabelRound.retrieval_count + 1)).rowcount:
                return label_round, query_ids
        return None

    # ------------------------------------------------------------------ the race
    def pick(self, chat_id: int, round_id: int, player_id: int, position: int) -> GroupRoundView:
        """A member's one pick (grid number `position`), locked in at once. Refused, changing
        nothing: a round of another chat or none (a forged press), a closed round, a member who has
        not consented, the round's labeler, a second pick. The pick that takes the last point place
        closes the round."""
        with self.db.write() as session:
            player = lock_player(session, player_id)
            found = session.exec(select(GroupRound).where(GroupRound.id == round_id).with_for_update()).first()
            if found is None or found.chat_id != chat_id:
                raise GameError(ErrorCode.STALE)
            now = self.clock()
            if found.status != GroupRoundStatus.OPEN or now >= found.closes_at:
                raise GameError(ErrorCode.GROUP_ROUND_OVER)
            if player.banned:
                raise GameError(ErrorCode.BANNED)
            if (player.consent_at is None or player.consent_withdrawn_at is not None
                    or player.language not in LANGUAGES):
                raise GameError(ErrorCode.NO_CONSENT)
            if session.get(LabelRound, found.label_round_id).player_id == player_id:
                raise GameError(ErrorCode.OWN_STICKER)
            if not isinstance(position, int) or not 1 <= position <= len(found.candidate_ids):
                raise GameError(ErrorCode.PICK_NOT_CANDIDATE)
            if not insert_ignoring_conflicts(session, GroupPick.__table__, [dict(
                    round_id=round_id, player_id=player_id, position=position,
                    sticker_id=found.candidate_ids[position - 1], points=0, picked_at=now)],
                    ["round_id", "player_id"]):
                raise GameError(ErrorCode.ALREADY_PICKED)
            player.last_active_at = now
            session.add(player)
            correct = session.exec(select(func.count()).select_from(GroupPick).where(
                GroupPick.round_id == round_id, GroupPick.sticker_id == found.sticker_id)).one()
            if correct >= len(self.settings.rules.points_by_rank) and self._won_close(session, round_id):
                self._settle(session, found)
            session.flush()
            session.refresh(found)
            return self._view(session, found)

    # ------------------------------------------------------------------ closing
    def due(self, limit: int = 50) -> list[int]:
        """Open rounds whose time is up, oldest first."""
        with self.db.read() as session:
            return list(session.exec(select(GroupRound.id).where(
                GroupRound.status == GroupRoundStatus.OPEN, GroupRound.closes_at <= self.clock())
                .order_by(GroupRound.closes_at, GroupRound.id).limit(limit)).all())

    def close(self, round_id: int) -> bool:
        """Close the round and score it; True for the one caller that did (any number may try)."""
        with self.db.write() as session:
            if not self._won_close(session, round_id):
                return False
            self._settle(session, session.get(GroupRound, round_id))
            return True

    def close_due(self, limit: int = 50) -> int:
        """Close every round whose time is up (each in its own transaction); how many this call closed."""
        return sum(self.close(round_id) for round_id in self.due(limit))

    def _won_close(self, session: Session, round_id: int) -> bool:
        return bool(session.execute(update(GroupRound).where(
            GroupRound.id == round_id, GroupRound.status == GroupRoundStatus.OPEN)
            .values(status=GroupRoundStatus.CLOSED, closed_at=self.clock())
            .execution_options(synchronize_session=False)).rowcount)

    def _settle(self, session: Session, closed: GroupRound) -> None:
        """Every pick in pick order becomes a judgment, scored as a private retrieval is; the first
        correct pickers get points by speed. Then the group is told (through the outbox)."""
        picks = session.exec(select(GroupPick).where(GroupPick.round_id == closed.id).order_by(GroupPick.id)).all()
        for player_id in sorted({pick.player_id for pick in picks}):
            lock_player(session, player_id)  # players first, in id order (the engine's lock order)
        places = list(self.settings.rules.points_by_rank)
        found = 0
        for pick in picks:
            correct = pick.sticker_id == closed.sticker_id
            points = places[found] if correct and found < len(places) else 0
            found += correct
            task = RetrievalTask(retriever_id=pick.player_id, label_round_id=closed.label_round_id,
                                 sticker_id=closed.sticker_id, language=closed.language,
                                 query_ids=list(closed.query_ids), candidate_ids=list(closed.candidate_ids),
                                 picks=[pick.sticker_id], seed=closed.seed, setting=TaskSetting.GROUP,
                                 status=TaskStatus.ANSWERED, hit_rank=1 if correct else None,
                                 created_at=closed.opened_at, answered_at=pick.picked_at)
            session.add(task)
            session.flush()
            for query_id in task.query_ids:
                session.add(TaskQuery(task_id=task.id, query_id=query_id))
            session.flush()
            self.scoring.score(session, task, points=points)
            pick.task_id, pick.points = task.id, points
            session.add(pick)
        if not picks:  # nobody played: the label round's slot goes back to the pool
            session.execute(update(LabelRound).where(LabelRound.id == closed.label_round_id,
                                                     LabelRound.retrieval_count > 0)
                            .values(retrieval_count=LabelRound.retrieval_count - 1))
        group = session.get(GroupChat, closed.chat_id)
        if group is None or group.status in (GroupStatus.ACTIVE, GroupStatus.MIGRATED):
            self.outbox.enqueue(session, f"group_round:{closed.id}:closed", NoticeKind.GROUP_ROUND_CLOSED,
                                {"round_id": closed.id, "language": closed.language}, chat_id=closed.chat_id)

    # ------------------------------------------------------------------ what the group sees
    def view(self, round_id: int) -> GroupRoundView | None:
        with self.db.read() as session:
            found = session.get(GroupRound, round_id)
            return self._view(session, found) if found is not None else None

    def _view(self, session: Session, found: GroupRound) -> GroupRoundView:
        texts = dict(session.exec(select(Query.id, Query.text).where(col(Query.id).in_(found.query_ids))).all())
        rows = session.exec(select(GroupPick, Player.nickname).join(Player, col(Player.id) == GroupPick.player_id)
                            .where(GroupPick.round_id == found.id).order_by(GroupPick.id)).all()
        closed = found.status == GroupRoundStatus.CLOSED
        picks = [GroupPickView(pick.player_id, nickname_of(pick.player_id, nickname, found.language), pick.position,
                               (pick.sticker_id == found.sticker_id) if closed else None, pick.points)
                 for pick, nickname in rows]
        return GroupRoundView(found.id, found.chat_id, found.language,
                              [texts[i] for i in found.query_ids if i in texts],
                              stickers(session, found.candidate_ids), picks, not closed,
                              round(self.settings.rules.group_round_seconds), found.message_id,
                              found.candidate_ids.index(found.sticker_id) + 1 if closed else None,
                              tuple(self.settings.rules.points_by_rank))

    def record_message(self, round_id: int, message_id: int) -> bool:
        """The round's message, once Telegram has it (the first one recorded stands)."""
        with self.db.write() as session:
            return bool(session.execute(update(GroupRound).where(
                GroupRound.id == round_id, col(GroupRound.message_id).is_(None)).values(message_id=message_id)
                .execution_options(synchronize_session=False)).rowcount)

    def may_post(self, chat_id: int, bot_key: str) -> bool:
        """Whether the bot may post unasked in the group now (/top, the pointer at an open round):
        at most once per settings.rules.group_pace_seconds, decided by a conditional UPDATE."""
        with self.db.write() as session:
            self._group(session, chat_id, bot_key)
            now = self.clock()
            return bool(session.execute(update(GroupChat).where(
                GroupChat.chat_id == chat_id,
                or_(col(GroupChat.last_post_at).is_(None),
                    GroupChat.last_post_at <= now - timedelta(seconds=self.settings.rules.group_pace_seconds)))
                .values(last_post_at=now).execution_options(synchronize_session=False)).rowcount)

    def language_of(self, chat_id: int) -> str | None:
        with self.db.read() as session:
            group = session.get(GroupChat, chat_id)
            return group.language if group is not None else None

    def table(self, chat_id: int, fallback: str, limit: int = 10) -> GroupTable:
        """The group's own leaderboard: points its members won in its rounds (from the ledger), the
        last 7 days and all time, by nickname; banned and withdrawn players are never listed."""
        with self.db.read() as session:
            group = session.get(GroupChat, chat_id)
            language = (group.language if group is not None else None) or fallback
            since = self.clock() - timedelta(days=LEADERBOARD_DAYS)
            return GroupTable(language, self._rows(session, chat_id, language, since, limit),
                              self._rows(session, chat_id, language, None, limit))

    def _rows(self, session: Session, chat_id: int, language: str, since: datetime | None,
              limit: int) -> list[LeaderboardRow]:
        return ranked(session, language, since, limit, GroupRound.chat_id == chat_id,
                      ScoreEvent.player_id == GroupPick.player_id,
                      joins=((GroupPick, col(GroupPick.task_id) == ScoreEvent.retrieval_task_id),
                             (GroupRound, col(GroupRound.id) == GroupPick.round_id)))

    # ------------------------------------------------------------------ the group as Telegram treats it
    def joined(self, chat_id: int, bot_key: str) -> None:
        """The bot was added (or may send again)."""
        with self.db.write() as session:
            group = self._group(session, chat_id, bot_key)
            group.status, group.bot_key, group.updated_at = GroupStatus.ACTIVE, bot_key, self.clock()
            session.add(group)

    def left(self, chat_id: int, bot_key: str, *, muted: bool = False) -> None:
        """The bot was removed (`muted`: it stays but may not send). Open rounds still close and
        score at their time; only the message about it is not sent."""
        with self.db.write() as session:
            group = self._group(session, chat_id, bot_key)
            group.status = GroupStatus.MUTED if muted else GroupStatus.REMOVED
            group.updated_at = self.clock()
            session.add(group)

    def migrated(self, old_chat_id: int, new_chat_id: int, bot_key: str) -> None:
        """The group became a supergroup: its rounds, table and pace follow it to the new id, and
        so do the outbox's posts (ChatMigration)."""
        with self.db.write() as session:
            old = self._group(session, old_chat_id, bot_key)
            new = self._group(session, new_chat_id, bot_key)
            new.language = new.language or old.language
            new.status, new.updated_at = GroupStatus.ACTIVE, self.clock()
            old.status, old.updated_at = GroupStatus.MIGRATED, self.clock()
            session.add_all([old, new])
            session.execute(update(GroupRound).where(GroupRound.chat_id == old_chat_id)
                            .values(chat_id=new_chat_id).execution_options(synchronize_session=False))
        self.outbox.migrate_chat(old_chat_id, new_chat_id)
