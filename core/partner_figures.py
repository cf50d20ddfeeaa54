"""Humans against models on the same rounds (issue 21): Recall@1 and Recall@3 of the people and of
each partner model, per language, over the rounds both answered, and how often one found the
sticker where the other missed it. TagATune's partner results became a benchmark of the models the
same way.

A round counts once: its first human answer (the earliest answered, non-gold retrieval task of a
person) against its partner answer of that model. A find is a hit at rank 1–3 (Recall@3; Recall@1:
rank 1). `compare` is the arithmetic on (human rank, model rank) pairs, for any source of them;
`partner_figures(db)` reads the pairs from the database. The dashboard shows them (core/dashboard.py)
and `sticktionary evaluate` can report the same by calling `partner_figures`.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from core.vocabulary import LANGUAGES
from storage.models import Player, PlayerKind, RetrievalTask, TaskStatus

Rank = int | None


def _share(count: int, total: int) -> float | None:
    return round(count / total, 4) if total else None


def compare(pairs: Iterable[tuple[Rank, Rank]]) -> dict:
    """Figures of (human rank, model rank) pairs, one per round; a rank is 1-based, None a miss."""
    rounds = human_1 = human_3 = model_1 = model_3 = human_only = model_only = both = neither = 0
    for human, model in pairs:
        rounds += 1
        human_found, model_found = human is not None and human <= 3, model is not None and model <= 3
        human_1 += human == 1
        model_1 += model == 1
        human_3 += human_found
        model_3 += model_found
        human_only += human_found and not model_found
        model_only += model_found and not human_found
        both += human_found and model_found
        neither += not human_found and not model_found
    return {"rounds": rounds,
            "human_recall_at_1": _share(human_1, rounds), "human_recall_at_3": _share(human_3, rounds),
            "model_recall_at_1": _share(model_1, rounds), "model_recall_at_3": _share(model_3, rounds),
            "human_found_model_missed": human_only, "model_found_human_missed": model_only,
            "both_found": both, "neither_found": neither,
            "human_found_model_missed_share": _share(human_only, rounds),
            "model_found_human_missed_share": _share(model_only, rounds)}


def round_pairs(session: Session, language: str) -> dict[str, list[tuple[Rank, Rank]]]:
    """Per partner model (its player's name): (first human rank, model rank) of each round both answered."""
    rows = session.exec(
        select(RetrievalTask.label_round_id, RetrievalTask.hit_rank, Player.kind, Player.display_name)
        .join(Player, col(Player.id) == RetrievalTask.retriever_id)
        .where(RetrievalTask.language == language, RetrievalTask.status == TaskStatus.ANSWERED,
               col(RetrievalTask.is_gold).is_(False), col(RetrievalTask.label_round_id).is_not(None))
        .order_by(RetrievalTask.answered_at, RetrievalTask.id)).all()
    human: dict[int, Rank] = {}
    models: dict[str, dict[int, Rank]] = {}
    for round_id, rank, kind, name in rows:
        if kind == PlayerKind.MODEL:
            models.setdefault(name, {}).setdefault(round_id, rank)
        else:
            human.setdefault(round_id, rank)
    return {name: [(human[r], rank) for r, rank in sorted(answers.items()) if r in human]
            for name, answers in sorted(models.items())}


def partner_figures(db: Engine, languages: Iterable[str] = LANGUAGES) -> dict[str, dict[str, dict]]:
    """{language: {model name: compare(...)}} over every round a person and that model both answered."""
    with Session(db) as session:
        return {language: {name: compare(pairs) for name, pairs in round_pairs(session, language).items()}
                for language in languages}


__all__ = ["compare", "partner_figures", "round_pairs"]
