"""Building blocks for engine tests: a small world of stickers, contexts and players."""

from __future__ import annotations

import random

from sqlmodel import select

from core.game import Game
from storage.db import session_scope
from storage.models import ChatContext, ContextStatus, Query, QuerySource, QueryStatus, Sticker
from storage.settings import Settings

STORY = [{"sender": "A", "text": "you will not believe what happened on the way home today"},
         {"sender": "B", "text": "tell me everything right now please"}]


def make_world(db, settings: Settings, *, stickers: int = 12, languages=("en",), seeds: bool = True,
               seed: int = 1, clock=None) -> Game:
    with session_scope(db) as session:
        for i in range(stickers):
            session.add(Sticker(key=f"{1000 + i}.png", file_path=f"stickers/{1000 + i}.png", format="png"))
        session.flush()
        ids = list(session.exec(select(Sticker.id).order_by(Sticker.id)))
        for language in languages:
            for n, sticker_id in enumerate(ids):
                session.add(ChatContext(sticker_id=sticker_id, conversation="01.json", message_id=n,
                                        messages=STORY, language=language, status=ContextStatus.APPROVED))
                if seeds:
                    text = f"seed{n} mood" if language == "en" else f"表情{n}"
                    session.add(Query(sticker_id=sticker_id, language=language, text=text,
                                      normalized_text=text, source=QuerySource.SEED,
                                      status=QueryStatus.VALIDATED))
    return Game.open(db, settings, rng=random.Random(seed), **({"clock": clock} if clock else {}))


def make_player(game: Game, user_id: int, language: str = "en", consent: bool = True) -> int:
    player = game.players.register(user_id, f"player{user_id}", language)
    if consent:
        game.players.give_consent(player.id)
    return player.id


def labeled_round(game: Game, player_id: int, queries=("happy dance",)) -> int:
    task = game.assignment.next_task(player_id, prefer="labeler")
    assert task.role == "labeler"
    for text in queries:
        game.labeling.add_query(player_id, task.round_id, text)
    game.labeling.submit_round(player_id, task.round_id)
    return task.round_id
