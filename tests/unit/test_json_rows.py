"""The marts API's JSON rows: the same values `json.dumps(row, default=json_value)` gave, for
every column type DuckDB hands to Arrow, and the answers kept per snapshot."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from millpond.serve.marts.json_rows import json_value, rows_json
from millpond.serve.marts.page_cache import MAX_ENTRY_BYTES, CachedPage, PageCache, page_key

EVERY_TYPE = """
select 1::tinyint a, -5::hugeint h, 18446744073709551615::ubigint u,
 9223372036854775807::bigint bi, 1.5::float f, 1e20::double d, 0.1::double d2,
 '1999-12-31'::date dt, '0001-01-01'::date dmin, '9999-12-31'::date dmax,
 '2024-01-02 03:04:05.123456'::timestamp ts, '2024-01-02 03:04:05'::timestamp ts0,
 '2024-01-02 03:04:05+00'::timestamptz tz, '12:34:56.5'::time tm, '\\xAA\\x00'::blob bl,
 'é"\\, ☃'::varchar s, interval 3 day iv, [1, 2]::int[] li, {'x': 1.5::decimal(4, 1)} st,
 123456789012345.678::decimal(18, 3) dec18, 999999999999999.999999::decimal(21, 6) dec21,
 12345678901234567890.12::decimal(38, 2) dec38, -0.01::decimal(4, 2) dneg,
 0.1234567890123456::decimal(18, 16) small, true bo, null::decimal(9, 2) dnull, null::date dtn
"""


def old_rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """What the API wrote before: json.dumps per row."""
    text = ",".join(json.dumps(r, default=json_value, allow_nan=False) for r in batch.to_pylist())
    return json.loads(f"[{text}]")


def batch_of(sql: str) -> pa.RecordBatch:
    table = duckdb.connect().execute(sql).to_arrow_table()
    return table.combine_chunks().to_batches()[0]


@pytest.mark.parametrize("with_nulls", [False, True])
def test_every_type_reads_back_as_before(with_nulls: bool) -> None:
    nulls = " union all select " + ", ".join(["null"] * 27)
    batch = batch_of(EVERY_TYPE + nulls if with_nulls else EVERY_TYPE)
    assert json.loads(b"[" + rows_json(batch) + b"]") == old_rows(batch)


def test_decimals_are_the_floats_python_makes_of_them() -> None:
    # Arrow's own decimal-to-float cast is one unit in the last place off for some of these.
    values = [Decimal(v).scaleb(-s) for v in range(-(10**6), 10**6, 7919) for s in (2, 4, 6)]
    batch = pa.record_batch([pa.array(values, pa.decimal128(18, 6))], names=["x"])
    got = json.loads(b"[" + rows_json(batch) + b"]")
    assert [r["x"] for r in got] == [float(v) for v in values]
    tail = batch.slice(11, 500)  # an offset into the buffers
    assert json.loads(b"[" + rows_json(tail) + b"]") == old_rows(tail)


def test_large_unscaled_decimals_take_the_exact_path() -> None:
    values = [Decimal("999999999999999.999"), Decimal("-123456789012345.678"), None]
    batch = pa.record_batch([pa.array(values, pa.decimal128(18, 3))], names=["x"])
    assert json.loads(b"[" + rows_json(batch) + b"]") == old_rows(batch)


def test_nan_is_refused_as_before() -> None:
    batch = pa.record_batch([pa.array([1.0, None, float("nan")])], names=["x"])
    with pytest.raises(ValueError, match="not JSON compliant"):
        rows_json(batch)
    assert rows_json(pa.record_batch([pa.array([None], pa.float64())], names=["x"])) == (
        b'{"x":null}'
    )


def test_the_page_cache_keeps_answers_per_snapshot_and_drops_the_oldest() -> None:
    cache = PageCache(max_bytes=3 * 100)
    one = page_key("/p/a.duckdb", "json", "SELECT 1", [1])
    assert page_key("/p/a.duckdb", "json", "SELECT 1", [True]) != one  # 1 == True in Python
    assert page_key("/p/b.duckdb", "json", "SELECT 1", [1]) != one  # another snapshot
    cache.put(one, CachedPage(b"x" * 100, {}))
    for i in range(3):
        cache.put(
            page_key("/p/a.duckdb", "json", f"SELECT {i + 2}", []), CachedPage(b"y" * 100, {})
        )
    assert cache.get(one) is None
    big = page_key("/p/a.duckdb", "csv", "SELECT 9", [])
    cache.put(big, CachedPage(b"z" * (MAX_ENTRY_BYTES + 1), {}))
    assert cache.get(big) is None
