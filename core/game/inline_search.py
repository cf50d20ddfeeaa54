"""Inline sticker search: `@bot so tired` in any chat answered with the stickers whose collected
queries match, and the sticker a consented player then chose kept as a relevance judgment.

- Ranking is the labeler's preview's (core/game/views.py `Previews.preview`): BM25 over the usable
  queries of the language, only stickers sharing a word other than a function word with the text
  (a text of function words only searches with all its words). An empty text shows the most-used
  stickers: the most chosen from inline results, then those with the most usable queries.
- Results are offered by a Telegram file_id of the answering bot (kind "sticker", `TelegramFile`):
  a sticker without one is left out (the bots upload them: bots/delivery/uploads.py). GIF stickers
  are never offered (Telegram takes no GIF as a sticker).
- Pages of `PAGE` results; the offset is the number of results already given, up to `MAX_RESULTS`.
- A result's id is "<sticker id>.<rank>", so a chosen result says which sticker and where it stood
  without anything being stored when results are shown. Nothing is recorded about whoever searches;
  a choice is recorded only for a player who consents (`choose`), to the hour.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, bindparam, exists, func
from sqlmodel import col, select

from core.datasets import consenting_authors, consenting_usable
from core.search import SearchIndexes
from core.text import content_tokens, normalize_text, tokenize
from core.vocabulary import LANGUAGES
from storage.db import Transactions, read_session
from storage.models import (
    USABLE_QUERY_STATUSES,
    InlineChoice,
    Player,
    PlayerKind,
    Query,
    Sticker,
    TelegramFile,
)

PAGE = 50  # answerInlineQuery takes at most 50 results
MAX_RESULTS = 1_000  # how deep the pages go: past this the answer has no next_offset
MAX_TEXT = 256  # Telegram's limit on an inline query's text; longer text is cut here
FILE_KIND = "sticker"  # the TelegramFile kind an InlineQueryResultCachedSticker needs
POPULAR_SECONDS = 300.0  # how long the empty query's ranking is reused
KNOWN_FILE_IDS = 500_000  # file ids remembered per bot (about 60 MB at most)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SPACES = re.compile(r"\s+")
_RESULT_ID = re.compile(r"(\d{1,12})\.(\d{1,4})")
_FILES = TelegramFile.__table__.c
_FILE_IDS = select(_FILES.sticker_id, _FILES.file_id).where(
    _FILES.bot_key == bindparam("bot_key"), _FILES.kind == FILE_KIND,
    _FILES.sticker_id.in_(bindparam("ids", expanding=True)))


def inline_text(text: object) -> str:
    """What a person typed after the bot's name, in the one normal form (core.text.normalize_text),
    control characters and lone surrogates as spaces, spaces collapsed, at most MAX_TEXT characters."""
    if not isinstance(text, str):
        return ""
    text = normalize_text(_CONTROL.sub(" ", text[: MAX_TEXT * 4]))
    return _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()[:MAX_TEXT].strip()


def page_start(offset: object) -> int:
    """The offset Telegram hands back (ours, from next_offset, but it comes from a client): a
    number of results already given, or 0 for anything else."""
    if not isinstance(offset, str) or not offset.isascii() or not offset.isdigit() or len(offset) > 6:
        return 0
    start = int(offset)
    return start if start < MAX_RESULTS and start % PAGE == 0 else 0


def result_id(sticker_id: int, rank: int) -> str:
    return f"{sticker_id}.{rank}"


def parse_result_id(value: object) -> tuple[int, int] | None:
    match = _RESULT_ID.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    sticker_id, rank = int(match.group(1)), int(match.group(2))
    return (sticker_id, rank) if 1 <= rank <= MAX_RESULTS else None


def searchable(languages) -> object:
    """SQL: the sticker has a usable query in one of `languages` (inline search can find it)."""
    return exists().where(col(Query.sticker_id) == col(Sticker.id), col(Query.language).in_(list(languages)),
                          col(Query.status).in_(USABLE_QUERY_STATUSES), consenting_authors())


def has_file_id(bot_key: str) -> object:
    """SQL: the bot has a sticker file id for the sticker (it can offer it inline)."""
    return exists().where(col(TelegramFile.sticker_id) == col(Sticker.id), TelegramFile.bot_key == bot_key,
                          TelegramFile.kind == FILE_KIND)


@dataclass(frozen=True)
class OfferCounts:
    stickers: int  # searchable stickers of the languages that could be offered (GIFs cannot)
    missing: int  # of those, without a file id of the bot: left out of inline results until uploaded
    gifs: int  # searchable GIF stickers, never offered inline


def offer_counts(db: Engine, bot_key: str, languages) -> OfferCounts:
    """How many stickers a bot can offer inline, and how many wait for an upload."""
    with read_session(db) as session:
        def count(*where) -> int:
            return session.exec(select(func.count()).select_from(Sticker).where(*where)).one()

        offerable = (searchable(languages), Sticker.format != "gif")
        return OfferCounts(count(*offerable), count(*offerable, ~has_file_id(bot_key)),
                           count(searchable(languages), Sticker.format == "gif"))


@dataclass(frozen=True)
class InlineResult:
    result_id: str
    sticker_id: int
    file_id: str


@dataclass(frozen=True)
class InlineAnswer:
    language: str
    query: str  # the normalised text searched
    results: list[InlineResult]
    next_offset: str  # "" when there are no more pages


class InlineSearch:
    def __init__(self, db: Transactions, indexes: Callable[[], SearchIndexes], clock: Callable[[], datetime],
                 popular_seconds: float = POPULAR_SECONDS) -> None:
        self.db = db
        self.indexes = indexes
        self.clock = clock
        self.popular_seconds = popular_seconds
        self._popular: dict[str, tuple[float, list[int]]] = {}
        self._popular_guard = threading.Lock()
        self._known_file_ids: dict[str, dict[int, str]] = {}  # bot key -> sticker id -> file id

    # ------------------------------------------------------------------ answering
    def language_for(self, telegram_user_id: int, bot_languages: tuple[str, ...] | list[str],
                     client_language: str | None) -> str:
        """The language to search: the bot's only one; else the player's own if they chose one the
        bot serves; else the client's when the bot serves it; else the bot's first. Read only."""
        languages = [language for language in bot_languages if language in LANGUAGES] or list(LANGUAGES)
        if len(languages) == 1:
            return languages[0]
        with self.db.read() as session:
            chosen = session.exec(select(Player.language).where(Player.telegram_user_id == telegram_user_id)).first()
        if chosen in languages:
            return chosen
        code = (client_language or "").lower()
        return next((language for language in languages if code.startswith(language)), languages[0])

    def answer(self, bot_key: str, language: str, text: object, offset: object = "") -> InlineAnswer:
        """A page of results for `text` (no side effects)."""
        query = inline_text(text)
        start = page_start(offset)
        ranked = self._offered(bot_key, language, query, start + PAGE + 1)  # one more: is there a next page?
        page = ranked[start:start + PAGE]
        results = [InlineResult(result_id(sticker_id, rank), sticker_id, file_id)
                   for rank, (sticker_id, file_id) in enumerate(page, start + 1)]
        more = len(ranked) > start + PAGE and start + PAGE < MAX_RESULTS
        return InlineAnswer(language, query, results, str(start + PAGE) if more else "")

    def _offered(self, bot_key: str, language: str, query: str, wanted: int) -> list[tuple[int, str]]:
        """The first `wanted` ranked stickers that have a file id of this bot, with it."""
        offered: list[tuple[int, str]] = []
        for chunk in self._ranked_chunks(language, query, wanted):
            ids = self._file_ids(bot_key, chunk)
            offered.extend((sticker_id, ids[sticker_id]) for sticker_id in chunk if sticker_id in ids)
            if len(offered) >= wanted:
                break
        return offered[:wanted]

    def _ranked_chunks(self, language: str, query: str, wanted: int) -> Iterator[list[int]]:
        """The ranking, in chunks of growing size: most stickers have a file id, so the first chunk
        (a little more than wanted) is usually all it takes."""
        if not query:
            ranking = self.popular(language)
            size, at = wanted + 10, 0
            while at < len(ranking):
                yield ranking[at:at + size]
                at, size = at + size, size * 2
            return
        tokens = tokenize(query)
        if not tokens:
            return
        index = self.indexes()[language]
        size, seen = wanted + 10, 0
        while True:
            result = index.search_sharing(tokens, content_tokens(tokens) or tokens, k=size)
            ids = [hit.sticker_id for hit in result.hits]
            if len(ids) > seen:
                yield ids[seen:]
            seen = len(ids)
            if seen >= result.matched or size >= MAX_RESULTS * 4:
                return
            size *= 4

    def _file_ids(self, bot_key: str, sticker_ids: list[int]) -> dict[int, str]:
        """This bot's sticker file ids among `sticker_ids`. A file id, once recorded, never changes
        (`TelegramFile` rows are only ever added), so those seen are remembered; the others are asked
        of the database every time: a sticker uploaded by any process is offered at once."""
        known = self._known_file_ids.setdefault(bot_key, {})
        found = {s: f for s, f in zip(sticker_ids, map(known.get, sticker_ids), strict=True) if f is not None}
        unknown = [s for s in sticker_ids if s not in found]  # (get, not [ ]: another thread may clear it)
        if unknown:
            # One statement compiled once, on the session's connection: no ORM query to build.
            with self.db.read() as session:
                fresh = dict(session.connection().execute(_FILE_IDS, {"bot_key": bot_key, "ids": unknown}).all())
            if len(known) + len(fresh) > KNOWN_FILE_IDS:
                known.clear()
            known.update(fresh)
            found.update(fresh)
        return found

    def popular(self, language: str) -> list[int]:
        """The empty query's ranking: most chosen from inline results, then most usable queries,
        then sticker id; recomputed every `popular_seconds`."""
        with self._popular_guard:
            cached = self._popular.get(language)
            if cached is not None and time.monotonic() - cached[0] < self.popular_seconds:
                return cached[1]
        with self.db.read() as session:
            chosen = dict(session.exec(select(InlineChoice.sticker_id, func.count()).where(
                InlineChoice.language == language).group_by(InlineChoice.sticker_id)).all())
            queries = dict(session.exec(
                select(Query.sticker_id, func.count()).where(*consenting_usable(language))
                .group_by(Query.sticker_id).order_by(func.count().desc(), Query.sticker_id)
                .limit(MAX_RESULTS * 4)).all())
        ranking = sorted(chosen.keys() | queries.keys(),
                         key=lambda s: (-chosen.get(s, 0), -queries.get(s, 0), s))[:MAX_RESULTS * 4]
        with self._popular_guard:
            self._popular[language] = (time.monotonic(), ranking)
        return ranking

    # ------------------------------------------------------------------ choices
    def choose(self, bot_key: str, telegram_user_id: int, chosen_result: object, text: object,
               language: str) -> bool:
        """Record a chosen inline result as a judgment when the chooser is a consenting player (True);
        anyone else's choice, or a result id that is not ours, leaves no trace (False). The page
        shown is the page the result was on, ranked again now."""
        parsed = parse_result_id(chosen_result)
        if parsed is None:
            return False
        sticker_id, rank = parsed
        with self.db.read() as session:
            player = session.exec(select(Player).where(Player.telegram_user_id == telegram_user_id)).first()
            if (player is None or player.consent_at is None or player.consent_withdrawn_at is not None
                    or player.kind != PlayerKind.HUMAN or player.banned):
                return False
            if session.get(Sticker, sticker_id) is None:
                return False
            player_id = player.id
        query = inline_text(text)
        start = (rank - 1) // PAGE * PAGE
        shown = [r.sticker_id for r in self.answer(bot_key, language, query, str(start)).results]
        hour = self.clock().replace(minute=0, second=0, microsecond=0)
        with self.db.write() as session:
            session.add(InlineChoice(bot_key=bot_key, player_id=player_id, language=language, query=query,
                                     shown=shown, sticker_id=sticker_id, rank=rank, hour=hour))
        return True
