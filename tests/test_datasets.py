"""StickerQueries in and out: the real samples round-trip byte for byte through a fresh database."""

import pytest

from core.datasets import export_sticker_queries, import_sticker_queries
from storage.sticker_queries import StickerQueriesFormatError, read_sticker_queries, write_sticker_queries
from tests.conftest import REAL_SAMPLES


@pytest.mark.parametrize("language", ["en", "zh"])
def test_real_samples_round_trip_byte_for_byte(db, tmp_path, language):
    source = REAL_SAMPLES / f"sticker_queries_{language}_release.first200.csv"
    result = import_sticker_queries(db, source, language)
    assert result["stickers"] == 200
    out = tmp_path / "out.csv"
    assert export_sticker_queries(db, language, out) == 200
    assert out.read_bytes() == source.read_bytes()
    # importing again adds nothing and the export is unchanged
    assert import_sticker_queries(db, source, language)["queries_added"] == 0
    export_sticker_queries(db, language, out)
    assert out.read_bytes() == source.read_bytes()


def test_rows_come_back_in_release_order_with_awkward_quoting(db, tmp_path):
    source = tmp_path / "in.csv"
    # A single query quoted although it needs no quotes, a comma inside a query, emoji, quotes.
    source.write_text('sticker_id,labeled_queries\n2.png,"看看"\n10.gif,"很忙,？？？, 好"\n'
                      '1.webm,"say ""hi"", 👍"\n', encoding="utf-8")
    import_sticker_queries(db, source, "zh")
    out = tmp_path / "out.csv"
    export_sticker_queries(db, "zh", out)
    assert list(read_sticker_queries(out)) == sorted(read_sticker_queries(source))


def test_a_file_that_is_not_sticker_queries_is_refused(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text\n1,x\n", encoding="utf-8")
    with pytest.raises(StickerQueriesFormatError):
        list(read_sticker_queries(bad))


def test_writer_uses_the_release_separator(tmp_path):
    out = tmp_path / "x.csv"
    write_sticker_queries(out, [("1.png", ["a", "b c"])])
    assert out.read_text(encoding="utf-8") == 'sticker_id,labeled_queries\n1.png,"a, b c"\n'
