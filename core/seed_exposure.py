"""Which seed queries players saw: the dataset card says it in numbers instead of "never shown".

Seeds (queries imported from StickerQueries CSVs) are shown in two places: on the label screen, as
taken queries a labeler may not repeat (the taboo, at most TABOO_SHOWN per round), and in retrieval
tasks, gold ones above all, as the queries a retriever searches from. Retrieval tasks record the
queries they showed (TaskQuery); label rounds record their taboo list in `taboo_shown` (rounds made
before that column existed have null there, and are counted apart).
"""

from __future__ import annotations

from array import array

import numpy as np
from sqlalchemy import Engine, func, select
from sqlmodel import col

from core.vocabulary import TABOO_SHOWN
from storage.models import LabelRound, Query, QuerySource, RoundKind

PROTOCOL = (f"a seed is shown to retrievers when a retrieval task (gold or not) listed it among the queries to "
            f"search from; shown as taboo when a label round's recorded taboo list (at most {TABOO_SHOWN} "
            f"queries) held it; rounds without a recorded list are counted in `label_rounds_taboo_unrecorded`, "
            f"and `seeds_on_labeled_stickers` counts the seeds of stickers that had a label round at all (a "
            f"bound on what such rounds could show)")


class SeedExposure:
    """Fed the export's records one by one: the seeds' ids and how many retrieval tasks showed each."""

    def __init__(self) -> None:
        self.ids = array("q")
        self.shown_to_retrievers = 0

    def add(self, record) -> bool:
        """True when the record is a seed."""
        if record.source != QuerySource.SEED:
            return False
        self.ids.append(record.query_id)
        self.shown_to_retrievers += record.shown > 0
        return True

    def table(self, db: Engine, language: str) -> dict:
        rounds = (LabelRound.language == language, LabelRound.kind == RoundKind.LABEL)
        taboo = array("q")
        recorded = unrecorded = 0
        with db.connect() as connection:
            # Not filtered in SQL: an unrecorded list is SQL NULL or JSON null, depending on how it was written.
            statement = select(LabelRound.taboo_shown).where(*rounds)
            for (shown,) in connection.execution_options(yield_per=5000).execute(statement):
                if isinstance(shown, list):
                    recorded += 1
                    taboo.extend(int(i) for i in shown)
                else:
                    unrecorded += 1
            labeled = select(LabelRound.sticker_id).where(*rounds)
            on_labeled = connection.execute(select(func.count()).select_from(Query).where(
                Query.language == language, Query.source == QuerySource.SEED,
                col(Query.sticker_id).in_(labeled))).scalar_one()
        seeds = np.frombuffer(self.ids, dtype=np.int64)
        as_taboo = int(np.isin(seeds, np.frombuffer(taboo, dtype=np.int64)).sum()) if len(taboo) else 0
        on_labeled = on_labeled if len(seeds) else 0  # seeds left out of the export: none shown in it
        return {"seeds": len(seeds), "seeds_shown_to_retrievers": self.shown_to_retrievers,
                "seeds_shown_as_taboo": as_taboo, "label_rounds_taboo_recorded": recorded,
                "label_rounds_taboo_unrecorded": unrecorded, "seeds_on_labeled_stickers": on_labeled,
                "protocol": PROTOCOL}
