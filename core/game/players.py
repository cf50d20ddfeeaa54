"""Players: first contact, language, consent, nickname, leaderboard opt-in, and the row locks every
other service takes first (lock order: the player, then their round or task, then what those touch)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.game.errors import GameError
from core.game.expiry import expire_open_work
from core.nicknames import NicknameError, clean_nickname, nickname_of
from core.search_log import record_author_change
from core.vocabulary import LANGUAGES, ErrorCode
from storage.db import Transactions
from storage.models import LabelRound, Player, RetrievalTask, RoundStatus, TaskStatus


def lock_player(session: Session, player_id: int) -> Player:
    """The player's row, locked for the transaction: taken first by every write about a player."""
    player = session.exec(select(Player).where(Player.id == player_id).with_for_update()).first()
    if player is None:
        raise GameError(ErrorCode.UNKNOWN_PLAYER)
    return player


def playable_player(session: Session, player_id: int, now: datetime) -> Player:
    """The player's locked row, if they may play now (not banned, consenting, with a language)."""
    player = lock_player(session, player_id)
    if player.banned:
        raise GameError(ErrorCode.BANNED)
    if player.consent_at is None or player.consent_withdrawn_at is not None:
        raise GameError(ErrorCode.NO_CONSENT)
    if player.language not in LANGUAGES:
        raise GameError(ErrorCode.NO_LANGUAGE)
    if not player.active:
        player.active = True  # they came back: deliver to them again
    player.last_active_at = now
    session.add(player)
    return player


def open_work(session: Session, player_id: int) -> LabelRound | RetrievalTask | None:
    """The player's open label round or retrieval task (at most one is open at a time)."""
    label_round = session.exec(select(LabelRound).where(
        LabelRound.player_id == player_id, LabelRound.status == RoundStatus.OPEN)).first()
    if label_round is not None:
        return label_round
    return session.exec(select(RetrievalTask).where(
        RetrievalTask.retriever_id == player_id, RetrievalTask.status == TaskStatus.OPEN)).first()


class Players:
    def __init__(self, db: Transactions, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.clock = clock

    def register(self, telegram_user_id: int | None, display_name: str = "", language: str | None = None,
                 bot_key: str | None = None) -> Player:
        """Find or create the player for a Telegram user (idempotent). `bot_key`: the bot they
        just wrote to, which the outbox then delivers their messages through."""
        if language is not None and language not in LANGUAGES:
            raise GameError(ErrorCode.BAD_LANGUAGE, language)
        if telegram_user_id is not None:  # the common case, a returning player: a read is enough
            existing = self.find(telegram_user_id)
            if existing:
                if bot_key is not None and existing.bot_key != bot_key:
                    self._use_bot(existing, bot_key)
                return existing
        with self.db.write() as session:
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
        with self.db.write() as session:
            session.execute(update(Player).where(col(Player.id) == player.id).values(bot_key=bot_key))
        player.bot_key = bot_key

    def find(self, telegram_user_id: int) -> Player | None:
        with self.db.read() as session:
            return session.exec(select(Player).where(Player.telegram_user_id == telegram_user_id)).first()

    def get(self, player_id: int) -> Player:
        with self.db.read() as session:
            player = session.get(Player, player_id)
            if player is None:
                raise GameError(ErrorCode.UNKNOWN_PLAYER)
            return player

    def set_language(self, player_id: int, language: str) -> None:
        if language not in LANGUAGES:
            raise GameError(ErrorCode.BAD_LANGUAGE, language)
        with self.db.write() as session:
            player = lock_player(session, player_id)
            if open_work(session, player_id):
                raise GameError(ErrorCode.FINISH_TASK_FIRST)
            player.language = language
            session.add(player)

    def give_consent(self, player_id: int) -> None:
        with self.db.write() as session:
            player = lock_player(session, player_id)
            player.consent_at = self.clock()
            if player.consent_withdrawn_at is not None:
                record_author_change(session, player_id, "consent")
            player.consent_withdrawn_at = None
            session.add(player)

    def withdraw_consent(self, player_id: int) -> None:
        """The player's queries leave future exports; open work is dropped."""
        with self.db.write() as session:
            player = lock_player(session, player_id)
            if player.consent_withdrawn_at is None:
                record_author_change(session, player_id, "withdrawn")
            player.consent_withdrawn_at = self.clock()
            session.add(player)
            expire_open_work(session, player_id)

    def pause(self, player_id: int) -> None:
        """The player stops for now: their open task goes back to the pool."""
        with self.db.write() as session:
            lock_player(session, player_id)
            expire_open_work(session, player_id)

    def set_leaderboard_opt_in(self, player_id: int, opted_in: bool) -> None:
        """Whether the player gets the daily and weekly leaderboard posts."""
        with self.db.write() as session:
            player = lock_player(session, player_id)
            player.leaderboard_opt_in = opted_in
            session.add(player)

    def set_nickname(self, player_id: int, text: str | None) -> str:
        """The player's chosen nickname (shown on /top, the leaderboard posts and /prizes); unique
        among the chosen nicknames of the player's language. Returns it as it will be shown."""
        try:
            shown, key = clean_nickname(text)
        except NicknameError as error:
            raise GameError(error.code, error.detail) from None
        with self.db.write() as session:
            player = lock_player(session, player_id)
            taken = session.exec(select(Player.id).where(Player.nickname_key == key, Player.id != player_id,
                                                         Player.language == player.language)).first()
            if taken is not None:
                raise GameError(ErrorCode.NICKNAME_TAKEN, shown)
            player.nickname, player.nickname_key = shown, key
            session.add(player)
            return shown

    def nickname(self, player_id: int) -> str:
        player = self.get(player_id)
        return nickname_of(player.id, player.nickname, player.language)

    def set_moderator(self, player_id: int, is_moderator: bool = True) -> None:
        with self.db.write() as session:
            player = lock_player(session, player_id)
            player.is_moderator = is_moderator
            session.add(player)

    def mark_inactive(self, player_id: int) -> None:
        """Telegram said the player blocked the bot: stop sending them anything."""
        with self.db.write() as session:
            player = lock_player(session, player_id)
            player.active = False
            session.add(player)
