"""Inline mode: `@bot so tired` in any chat answered with stickers from the collected queries, and
the result a person then sent. Served to anyone, player or not; the engine decides what is shown
and whose choice is kept (core/game/inline_search.py)."""

from __future__ import annotations

from bots.messages.incoming import IncomingKind
from bots.messages.replies import AnswerInline
from bots.router import GuestTurn, Router

router = Router()


@router.guest(IncomingKind.INLINE_QUERY)
def inline_query(turn: GuestTurn) -> None:
    incoming, game = turn.incoming, turn.game
    language = game.inline.language_for(incoming.user_id, turn.bot_languages, incoming.language_code)
    answer = game.inline.answer(turn.bot_key, language, incoming.text, incoming.offset)
    # The same query gets the same answer from a one-language bot, whoever asks: Telegram may share
    # it. A bot of several languages answers in the asker's, so only they may see it.
    turn.say(AnswerInline(incoming.inline_query_id or "", [(r.result_id, r.file_id) for r in answer.results],
                          cache_time=game.settings.telegram.inline_cache_seconds, personal=len(turn.bot_languages) > 1,
                          next_offset=answer.next_offset))


@router.guest(IncomingKind.CHOSEN_INLINE)
def chosen_inline(turn: GuestTurn) -> None:
    incoming, game = turn.incoming, turn.game
    language = game.inline.language_for(incoming.user_id, turn.bot_languages, incoming.language_code)
    game.inline.choose(turn.bot_key, incoming.user_id, incoming.result_id, incoming.text, language)
