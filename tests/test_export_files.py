"""The export's file writers: Parquet batches in order, Arrow columns as pyarrow makes them, and the
garbage collector's setting for the export, safe beside the bots' frozen heap."""

from __future__ import annotations

import gc
import threading
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storage.arrow_columns import column, integers
from storage.export_files import ParquetRecords, batch_heap

SCHEMA = pa.schema([("n", pa.int64())])


def test_rows_and_column_batches_keep_their_order_in_row_groups(tmp_path):
    path = tmp_path / "x.parquet"
    records = ParquetRecords(path, SCHEMA, batch_rows=5)
    records.write((1,))
    records.write_table(pa.table({"n": [2, 3]}, schema=SCHEMA))
    records.write_many([(4,)])
    records.write_table(pa.table({"n": [5]}, schema=SCHEMA))
    records.write_table(pa.table({"n": list(range(6, 12))}, schema=SCHEMA))
    records.write_table(pa.table({"n": []}, schema=SCHEMA))
    records.write((12,))
    records.close()
    assert pq.read_table(path)["n"].to_pylist() == list(range(1, 13))
    assert records.rows == 12
    assert pq.ParquetFile(path).num_row_groups < 7  # small column batches gathered, not one group each


@pytest.mark.parametrize("kind", [pa.string(), pa.int32(), pa.int64(), pa.bool_(), pa.timestamp("us", tz="UTC")])
def test_columns_are_what_pyarrow_makes(kind):
    samples = {
        pa.string(): ["a", None, "猫", ""],
        pa.int32(): [1, None, -3, 2**31 - 1],
        pa.int64(): [1, None, -(2**40), 0],
        pa.bool_(): [True, None, False, True],
        # naive times are UTC, as the database gives them; the same moment twice is converted once
        pa.timestamp("us", tz="UTC"): [datetime(2026, 12, 6, 23), None, datetime(2026, 12, 6, 23),
                                       datetime(2026, 1, 1, 5, tzinfo=UTC)],
    }
    assert column(samples[kind], kind).equals(pa.array(samples[kind], type=kind))
    assert column(tuple(samples[kind]), kind).equals(pa.array(samples[kind], type=kind))


def test_integers_from_numpy_with_nulls():
    values = np.array([3, 0, 2], dtype=np.int64)
    assert integers(values, pa.int32(), valid=values > 0).to_pylist() == [3, None, 2]
    assert integers(values).to_pylist() == [3, 0, 2]


def test_batch_heap_restores_the_collector_and_leaves_a_frozen_heap_frozen():
    before = gc.get_threshold()
    with batch_heap():
        assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] >= 10_000
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0

    with pytest.raises(RuntimeError), batch_heap():
        raise RuntimeError("the export failed")
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0

    gc.freeze()  # as the bots keep their start-up heap (bots/startup.settled_heap)
    try:
        frozen = gc.get_freeze_count()
        with batch_heap():
            pass
        assert gc.get_freeze_count() == frozen  # not unfrozen by the export
    finally:
        gc.unfreeze()


def test_overlapping_batches_restore_once_the_last_ends():
    before = gc.get_threshold()
    started, finish = threading.Event(), threading.Event()

    def long_batch():
        with batch_heap():
            started.set()
            finish.wait(10)

    thread = threading.Thread(target=long_batch)
    thread.start()
    started.wait(10)
    with batch_heap():
        pass
    assert gc.get_threshold()[0] >= 10_000  # the first batch still runs with its setting
    finish.set()
    thread.join()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_read_ahead_gives_every_batch_in_order_raises_errors_and_closes_on_an_early_stop():
    from storage.db import read_ahead

    assert list(read_ahead(iter([[1, 2], [3], []]))) == [[1, 2], [3], []]

    def failing():
        yield [1]
        raise LookupError("the database went away")

    got = []
    with pytest.raises(LookupError, match="went away"):
        for batch in read_ahead(failing()):
            got.append(batch)
    assert got == [[1]]

    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                n += 1
                yield [n]
        finally:
            closed.set()  # the connection a real producer holds is given back here

    for batch in read_ahead(endless(), depth=2):
        if batch == [5]:
            break
    assert closed.wait(5)
    assert not [t for t in threading.enumerate() if t.name == "read-ahead"]
