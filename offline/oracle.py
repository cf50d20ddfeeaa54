"""What a simulated player 'knows' about a task, read from the database (simulation only)."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session

from storage.models import LabelRound, RetrievalTask, Sticker


def database_oracle(db: Engine):
    def oracle(kind: str, task_id: int):
        with Session(db) as session:
            if kind == "retrieval":
                task = session.get(RetrievalTask, task_id)
                return list(task.candidate_ids), task.sticker_id
            label_round = session.get(LabelRound, task_id)
            return session.get(Sticker, label_round.sticker_id).key
    return oracle
