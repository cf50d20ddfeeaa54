"""storage.db.utc_truncated: the export's times are cut by the database, in UTC, whatever the session's zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import DateTime, cast, insert, select, text

from storage.db import is_postgres, utc_truncated
from storage.models import Sticker

LATE = datetime(2026, 12, 6, 23, 59, 59, 987654, tzinfo=UTC)  # a zone half an hour east is already on the 7th


@pytest.mark.parametrize(("resolution", "expected"), [
    ("hour", datetime(2026, 12, 6, 23)),
    ("minute", datetime(2026, 12, 6, 23, 59)),
    ("second", datetime(2026, 12, 6, 23, 59, 59)),
])
def test_times_are_cut_in_utc_and_come_back_naive(db, resolution, expected):
    with db.begin() as connection:
        connection.execute(insert(Sticker).values(key="late.png", file_path="stickers/late.png", format="png",
                                                  created_at=LATE))
    with db.connect() as connection:
        if is_postgres(db):
            connection.execute(text("SET TIME ZONE 'Asia/Kolkata'"))  # +05:30: a cut in local time would differ
        cut = connection.execute(select(utc_truncated(db, Sticker.created_at, resolution))
                                 .where(Sticker.key == "late.png")).scalar_one()
        missing = connection.execute(select(utc_truncated(db, cast(None, DateTime(timezone=True)), resolution))
                                     ).scalar_one()
    assert cut == expected and cut.tzinfo is None
    assert missing is None


def test_an_unknown_resolution_is_refused(db):
    with pytest.raises(ValueError, match="hour, minute, second"):
        utc_truncated(db, Sticker.created_at, "day")
