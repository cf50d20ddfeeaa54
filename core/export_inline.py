"""The export's `inline` config: stickers players chose from the bot's inline search results, one row
a choice, as implicit relevance judgments from real use (the kind of click log behind PerSRV/PEARL).

Only choices of players who consented are ever recorded (core/game/inline_search.py), and those of
players who withdrew since are left out here. The chooser is the same keyed pseudonym as a query's
`annotator`; the time is the hour. Telegram reports a choice only with inline feedback on, sampled as
the operator set it in BotFather (`/setinlinefeedback`), which the card states (`inline_card`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
from sqlalchemy import Engine, select
from sqlmodel import col

from core.export_layout import data_file
from storage.export_files import ParquetRecords
from storage.models import InlineChoice, Player, Sticker

CONFIG = "inline"
INLINE_SCHEMA = pa.schema([
    ("language", pa.string()),
    ("query", pa.string()),
    ("sticker_id", pa.string()),
    ("rank", pa.int32()),
    ("shown", pa.list_(pa.string())),
    ("chooser", pa.string()),
    ("hour", pa.timestamp("us", tz="UTC")),
])
INLINE_FIELD_DOCS = {
    "language": "en or zh: the language the bot searched in",
    "query": "what the person typed after the bot's name, normalised (NFKC, no invisible or control characters); "
             "empty for the empty query, which shows the most-used stickers",
    "sticker_id": "the sticker chosen, by file name as in the StickerQueries CSVs",
    "rank": "its place among all the query's results (1 is the top)",
    "shown": "the stickers on the page of results it was chosen from, in order (ranked again when the choice "
             "arrived: Telegram does not say what the person saw)",
    "chooser": "keyed pseudonym of the player, the same as `annotator` in the query records",
    "hour": "when, truncated to the hour (UTC)",
}


def config() -> dict:
    """The card's entry for this config."""
    return {"config_name": CONFIG, "data_files": [{"split": "train", "path": data_file(CONFIG)}]}


def write_inline(db: Engine, folder: Path, pseudonym: Callable[[int], str | None], batch: int = 5000) -> dict:
    """Write data/inline.parquet (always, if need be without rows); returns {"choices": n}."""
    withdrawn = select(Player.id).where(col(Player.consent_withdrawn_at).is_not(None))
    statement = (select(InlineChoice.language, InlineChoice.query, Sticker.key, InlineChoice.rank, InlineChoice.shown,
                        InlineChoice.player_id, InlineChoice.hour)
                 .join(Sticker, Sticker.id == InlineChoice.sticker_id)
                 .where(col(InlineChoice.player_id).not_in(withdrawn))
                 .order_by(InlineChoice.id))
    keys: dict[int, str] = {}
    writer = ParquetRecords(folder / data_file(CONFIG), INLINE_SCHEMA)
    try:
        with db.connect() as connection:
            rows = connection.execution_options(yield_per=batch).execute(statement)
            for language, query, sticker, rank, shown, player_id, hour in rows:
                missing = [s for s in shown if s not in keys]
                if missing:
                    keys.update(connection.execute(select(Sticker.id, Sticker.key).where(
                        col(Sticker.id).in_(missing))).all())
                writer.write((language, query, sticker, rank, [keys[s] for s in shown if s in keys],
                              pseudonym(player_id), hour))
    finally:
        writer.close()
    return {"choices": writer.rows}


def inline_card(choices: int, sampling: int) -> str:
    """The card's section on this config."""
    fields = "\n".join(f"| `{field.name}` | {field.type} | {INLINE_FIELD_DOCS[field.name]} |" for field in INLINE_SCHEMA)
    rate = "every choice (1/1)" if sampling == 1 else f"about one choice in {sampling} (1/{sampling})"
    loading = (f'`load_dataset("path/to/this/export", "inline")`: {choices}' if choices else
               "None yet in this export (the config is listed once there are some; the file `data/inline.parquet` "
               "is there, without rows): the")
    return f"""## Inline choices (`inline` config)

{loading} stickers players chose from the bot's inline
search (`@bot so tired` in any chat), each an implicit relevance judgment of `sticker_id` for `query`.
Only players who consented to the research use are recorded (anyone else is served, never recorded), and
players who withdrew are left out.

Telegram tells a bot about a chosen result only when inline feedback is on in BotFather
(`/setinlinefeedback`), and then only for a random sample of choices at the rate set there: 1/1 (every
choice), 1/10, 1/100 or 1/1000, for every person alike. This deployment declares {rate}
(STICKTIONARY_INLINE_FEEDBACK_SAMPLING): multiply counts by that rate to estimate all choices; which choices
were sampled does not depend on the query or the sticker.

| field | type | meaning |
|---|---|---|
{fields}
"""
