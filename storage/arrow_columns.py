"""Arrow columns from Python values, built from their buffers.

`pyarrow.array(list)` imports pandas the first time it runs (pyarrow asks whether the list is a pandas
object, and finding out imports pandas: about 45 MB of resident memory), though no pandas object is
ever involved. The export writes its parquet files a batch at a time from plain tuples, and its
budget is 400 MB for a million queries, so the types it writes (strings, integers, booleans, UTC
timestamps) are built here from their buffers with numpy, which imports nothing more. Any other type
goes through `pyarrow.array`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_INTEGERS = {pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64}


def _validity(values: Sequence) -> tuple[pa.Buffer | None, int]:
    nulls = values.count(None) if isinstance(values, (list, tuple)) else sum(1 for v in values if v is None)
    if not nulls:
        return None, 0
    present = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    return pa.py_buffer(np.packbits(present, bitorder="little")), nulls


def _strings(values: Sequence) -> pa.Array:
    encoded = [b"" if v is None else v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    large = offsets[-1] >= 2**31
    validity, nulls = _validity(values)
    kind = pa.large_string() if large else pa.string()
    array = pa.Array.from_buffers(kind, len(values), [validity, pa.py_buffer(offsets if large else
                                                                             offsets.astype(np.int32)),
                                                      pa.py_buffer(b"".join(encoded))], null_count=nulls)
    return array.cast(pa.string()) if large else array  # a batch over 2 GiB of text: let arrow say so


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the database's naive times are UTC
    return (moment - _EPOCH) // _MICROSECOND


class _Micros(dict):
    """datetime -> microseconds since the epoch, each distinct time converted once: exported times are
    cut to the hour (by default), so a batch holds few distinct ones."""

    def __missing__(self, moment: datetime) -> int:
        micros = self[moment] = _micros(moment)
        return micros


def _timestamps(values: Sequence) -> np.ndarray:
    micros = _Micros()
    return np.fromiter((0 if v is None else micros[v] for v in values), dtype=np.int64, count=len(values))


def column(values: Sequence, kind: pa.DataType) -> pa.Array:
    """One column of a batch; the same array `pyarrow.array(values, type=kind)` makes."""
    n = len(values)
    if kind == pa.string():
        return _strings(values)
    validity, nulls = _validity(values)
    if kind in _INTEGERS:
        data = (np.array(values, dtype=_INTEGERS[kind]) if not nulls else
                np.fromiter((0 if v is None else v for v in values), dtype=_INTEGERS[kind], count=n))
    elif kind == pa.bool_():
        data = np.packbits(np.fromiter((bool(v) for v in values), dtype=bool, count=n), bitorder="little")
    elif pa.types.is_timestamp(kind) and kind.unit == "us" and kind.tz in ("UTC", "+00:00"):
        data = _timestamps(values)
    else:
        return pa.array(values, type=kind)
    return pa.Array.from_buffers(kind, n, [validity, pa.py_buffer(data)], null_count=nulls)


def integers(values: np.ndarray, kind: pa.DataType = pa.int64(), valid: np.ndarray | None = None) -> pa.Array:
    """An integer column from a numpy array, null where `valid` (booleans) is false."""
    data = np.ascontiguousarray(values, dtype=_INTEGERS[kind])
    validity, nulls = None, 0
    if valid is not None and not valid.all():
        validity, nulls = pa.py_buffer(np.packbits(valid, bitorder="little")), int(len(valid) - valid.sum())
    return pa.Array.from_buffers(kind, len(data), [validity, pa.py_buffer(data)], null_count=nulls)
