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


# Two real rows of the full zh release (after the sample's last sticker, so release order holds): the
# first quotes a single query that needs no quotes, the second does not. No rule tells them apart.
RELEASE_ROWS_BEYOND_THE_SAMPLE = '5440500112532972502.webm,"吃瓜"\n5922255337016003283.png,拿我的钱\n'


def test_the_zh_release_comes_back_byte_for_byte_quoting_included(db, tmp_path, settings):
    from core.exports import run_export

    source = tmp_path / "sticker_queries_zh_release.csv"
    sample = (REAL_SAMPLES / "sticker_queries_zh_release.first200.csv").read_bytes()
    source.write_bytes(sample + RELEASE_ROWS_BEYOND_THE_SAMPLE.encode("utf-8"))
    assert import_sticker_queries(db, source, "zh")["stickers"] == 202
    out = tmp_path / "out.csv"
    assert export_sticker_queries(db, "zh", out) == 202
    assert out.read_bytes() == source.read_bytes()
    # The research export's release CSV too.
    summary = run_export(db, settings)
    assert (summary.folder / "sticker_queries_zh_release.csv").read_bytes() == source.read_bytes()
    # Importing again keeps it so, and a player's query joining the row needs quotes anyway.
    import_sticker_queries(db, source, "zh")
    export_sticker_queries(db, "zh", out)
    assert out.read_bytes() == source.read_bytes()


def test_the_reader_says_which_rows_were_quoted_beyond_need(tmp_path):
    from storage.sticker_queries import read_release_rows

    source = tmp_path / "in.csv"
    source.write_text('sticker_id,labeled_queries\n1.png,"看看"\n2.png,看看\n3.png,"a, b"\n4.png,"a ""b"""\n',
                      encoding="utf-8")
    assert [quoted for _, _, quoted in read_release_rows(source)] == [True, False, False, False]
    out = tmp_path / "out.csv"
    write_sticker_queries(out, read_release_rows(source))
    assert out.read_bytes() == source.read_bytes()
