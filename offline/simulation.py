"""Simulated players who play through the engine: labelers who type plausible queries (and meet
the taboo rule), retrievers who mostly find the right sticker, and a moderator who reviews misses.
Used by the demo and the engine benchmark."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from core.game import Game, GameError
from core.views import LabelTaskView, RetrievalTaskView
from core.vocabulary import Role
from offline.demo_pack import STICKERS, sticker_key

_STOP = set("the a an to of and in on at for it is was i my me you your we our he she they this that with "
            "after before all just now from by be have has had are not so even".split())


def demo_vocabulary() -> dict[tuple[str, str], list[str]]:
    """(sticker key, language) -> queries a player might type: the seeds plus words of the story."""
    import jieba

    vocabulary = {}
    for index, (_emoji, en, zh, en_seeds, zh_seeds) in enumerate(STICKERS):
        key = sticker_key(index, index % 8 == 7)
        en_words = [w for w in en.replace(",", "").split() if w.lower() not in _STOP and len(w) > 3]
        zh_words = [w for w in jieba.lcut(zh) if len(w) >= 2]
        vocabulary[(key, "en")] = en_seeds + [" ".join(en_words[i:i + 2]) for i in range(0, len(en_words), 2)]
        vocabulary[(key, "zh")] = zh_seeds + zh_words
    return vocabulary


@dataclass
class SimulatedPlayer:
    player_id: int
    language: str
    skill: float
    rng: random.Random
    stats: Counter = field(default_factory=Counter)


class Simulation:
    def __init__(self, game: Game, vocabulary: dict[tuple[str, str], list[str]] | None = None, seed: int = 1):
        self.game = game
        self.vocabulary = vocabulary or {}
        self.rng = random.Random(seed)
        self.players: list[SimulatedPlayer] = []

    def add_players(self, language: str, count: int, start_user_id: int) -> list[SimulatedPlayer]:
        added = []
        for n in range(count):
            player = self.game.players.register(start_user_id + n, f"{language}-player-{n + 1}", language)
            self.game.players.give_consent(player.id)
            added.append(SimulatedPlayer(player.id, language, skill=self.rng.uniform(0.6, 0.95),
                                         rng=random.Random(self.rng.getrandbits(32))))
        self.players.extend(added)
        return added

    def play_turn(self, player: SimulatedPlayer) -> str | None:
        task = self.game.assignment.next_task(player.player_id)
        if task is None:
            player.stats["idle"] += 1
            return None
        if isinstance(task, LabelTaskView):
            self._label(player, task)
            return Role.LABELER
        self._retrieve(player, task)
        return Role.RETRIEVER

    def _label(self, player: SimulatedPlayer, task: LabelTaskView) -> None:
        ideas = list(self.vocabulary.get((task.sticker.key, task.language), []))
        if not ideas:
            ideas = [f"{task.sticker.key.split('.')[0][-4:]} mood", "reaction", "feeling"]
        player.rng.shuffle(ideas)
        added = 0
        for idea in ideas[:6]:
            try:
                self.game.labeling.add_query(player.player_id, task.round_id, idea)
                added += 1
            except GameError as error:
                player.stats[f"refused_{error.code}"] += 1
            if added >= 3:
                break
        if added:
            self.game.labeling.submit_round(player.player_id, task.round_id)
            player.stats["rounds"] += 1
        else:
            self.game.labeling.skip_round(player.player_id, task.round_id)
            player.stats["skipped"] += 1

    def _retrieve(self, player: SimulatedPlayer, task: RetrievalTaskView) -> None:
        if player.rng.random() < 0.05:
            self.game.retrieval.skip_task(player.player_id, task.task_id)
            player.stats["skipped"] += 1
            return
        target = self._guess_target(task)
        others = [c.id for c in task.candidates if c.id != target]
        player.rng.shuffle(others)
        if player.rng.random() < player.skill:
            picks = [target, *others[:player.rng.randint(0, 2)]]
        else:
            picks = others[:player.rng.randint(1, 3)]
            if player.rng.random() < 0.5:
                picks.insert(player.rng.randint(1, len(picks)), target)
                picks = picks[:3]
        outcome = self.game.retrieval.submit_ranking(player.player_id, task.task_id, picks)
        player.stats["hits" if outcome.hit_rank else "misses"] += 1

    def _guess_target(self, task: RetrievalTaskView) -> int:
        """The simulation's stand-in for understanding: it knows which sticker the queries were for."""
        from storage.models import RetrievalTask

        with self.game.db.read() as session:
            return session.get(RetrievalTask, task.task_id).sticker_id

    def moderate(self, moderator_id: int, accept_share: float = 0.8) -> Counter:
        decisions: Counter = Counter()
        while items := self.game.moderation.pending_reviews(moderator_id, limit=50):
            for item in items:
                if self.rng.random() < accept_share:
                    self.game.moderation.accept_query(moderator_id, item.query.id)
                    decisions["accepted"] += 1
                else:
                    self.game.moderation.discard_query(moderator_id, item.query.id)
                    decisions["discarded"] += 1
        return decisions
