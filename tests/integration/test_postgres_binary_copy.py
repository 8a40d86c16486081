"""The PostgreSQL target's binary COPY: every type it encodes itself arrives as the CSV route
delivered it (the same partition loaded both ways and read back), edge values included."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
import pytest

from millpond.core.registry import SourceItem, TableState
from millpond.ingest.lake import Lake
from millpond.ingest.landing import land_table
from millpond.targets.postgres import load as pg_load
from millpond.targets.postgres.binary_copy import HEADER, TRAILER, encode_batch
from millpond.targets.postgres.load import LoadError, load_table
from millpond.targets.postgres.types import to_postgres

pytestmark = pytest.mark.integration
DAY = dt.date(2026, 11, 28)
D = decimal.Decimal


class OneTable:
    """A source handing out one Arrow table per land."""

    def __init__(self, data: pa.Table) -> None:
        self.data = data
        self.count = 0

    def items(self, table: str, state: TableState) -> list[SourceItem]:
        self.count += 1
        data = self.data
        return [
            SourceItem(
                name=f"{table}-{self.count}",
                fingerprint=f"item-{self.count}",
                size=data.nbytes,
                read=lambda: (data.schema, iter(data.to_batches())),
            )
        ]

    def warnings(self) -> list[str]:
        return []


EVERY_TYPE = pa.table(
    {
        "flag": pa.array([True, False, None, True], pa.bool_()),
        "tiny": pa.array([-128, 127, None, 0], pa.int8()),
        "utiny": pa.array([255, 0, None, 1], pa.uint8()),
        "small": pa.array([-32768, 32767, None, 0], pa.int16()),
        "usmall": pa.array([65535, 0, None, 1], pa.uint16()),
        "int": pa.array([-(2**31), 2**31 - 1, None, 0], pa.int32()),
        "uint": pa.array([2**32 - 1, 0, None, 1], pa.uint32()),
        "big": pa.array([-(2**63), 2**63 - 1, None, 0], pa.int64()),
        "ubig": pa.array([2**64 - 1, 0, None, 10**19], pa.uint64()),
        "real": pa.array([0.1, float("inf"), None, float("nan")], pa.float32()),
        "double": pa.array([0.1, -float("inf"), None, 1e308], pa.float64()),
        "money": pa.array([D("-12345678.90"), D("0.01"), None, D("0")], pa.decimal128(10, 2)),
        "wide": pa.array(
            [D("-1234567890123456789012345678.0123456789"), D("0.0000000001"), None, D("1")],
            pa.decimal128(38, 10),
        ),
        "fraction": pa.array([D("0.12345"), D("-0.00001"), None, D("0")], pa.decimal128(5, 5)),
        "scale3": pa.array([D("123456.789"), D("-0.001"), None, D("10000")], pa.decimal128(9, 3)),
        "text": pa.array(["tab\there", 'new\nline "q", \\back\\', None, "ünï ✓ \r\n"]),
        "empty": pa.array(["", " ", None, "NULL"]),
        "bytes": pa.array([b"\x00\xff\\x'\n", b"", None, b"\\N"], pa.binary()),
        "day": pa.array([dt.date(1, 1, 1), dt.date(1999, 12, 31), None, dt.date(9999, 12, 31)]),
        "clock": pa.array(
            [dt.time(0, 0), dt.time(23, 59, 59, 999999), None, dt.time(12, 0, 0, 1)],
            pa.time64("us"),
        ),
        "at_s": pa.array([-(10**10), 0, None, 10**10], pa.timestamp("s")),
        "at_ms": pa.array([-1, 1_700_000_000_123, None, 0], pa.timestamp("ms")),
        "at_us": pa.array(
            [-1, 946_684_800_000_000, None, 253_402_300_799_999_999], pa.timestamp("us")
        ),
        "at_ns": pa.array(
            [-500, 1_700_000_000_123_456_500, None, 1_499_999_999_999_999_500], pa.timestamp("ns")
        ),
        "at_tz": pa.array([0, -(10**15), None, 10**15], pa.timestamp("us", tz="UTC")),
        "tags": pa.array([["a", "b"], [], None, ["\t"]], pa.list_(pa.string())),
    }
)


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def table_as_text(url: str, schema: str) -> list[tuple[Any, ...]]:
    columns = ", ".join(f'"{c}"::text' for c in EVERY_TYPE.column_names)
    return rows(url, f"select {columns} from {schema}.app__things order by _partition_id, ctid")


def column_types(url: str, schema: str) -> list[tuple[Any, ...]]:
    return rows(
        url,
        "select column_name, data_type, numeric_precision, numeric_scale "
        "from information_schema.columns where table_schema = %s and table_name = 'app__things' "
        "order by ordinal_position".replace("%s", f"'{schema}'"),
    )


def test_every_type_loads_as_the_csv_route_loaded_it(
    machine_pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake.from_url(f"file://{tmp_path / 'lake'}")
    source = OneTable(EVERY_TYPE)
    for run in ("r1", "r2"):  # the second partition meets the stored types
        assert land_table(lake, "app", source, "things", run, today=DAY).manifest is not None

    assert load_table(machine_pg, lake, "raw_binary", "app", "things").table_rows == 8
    monkeypatch.setattr(pg_load, "binary_ready", lambda incoming, columns: False)
    assert load_table(machine_pg, lake, "raw_csv", "app", "things").table_rows == 8

    assert column_types(machine_pg, "raw_binary") == column_types(machine_pg, "raw_csv")
    assert table_as_text(machine_pg, "raw_binary") == table_as_text(machine_pg, "raw_csv")
    got = rows(
        machine_pg,
        "select flag, big, ubig, money, wide, fraction, scale3, text, bytes, day, at_ns, at_tz "
        "from raw_binary.app__things order by _partition_id, ctid limit 4",
    )
    assert got[0] == (
        True,
        -(2**63),
        D(2**64 - 1),
        D("-12345678.90"),
        D("-1234567890123456789012345678.0123456789"),
        D("0.12345"),
        D("123456.789"),
        "tab\there",
        b"\x00\xff\\x'\n",
        dt.date(1, 1, 1),
        dt.datetime(1970, 1, 1),  # -500 ns: the fraction .9999995 rounds half to even, up
        dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
    )
    assert got[2] == (None,) * 12
    assert got[1][7:9] == ('new\nline "q", \\back\\', b"")
    assert got[3][10] == dt.datetime(2017, 7, 14, 2, 40, 0, 0)  # .9999995 s rounds up


def test_uuid_and_text_of_other_types_load_as_before(
    machine_pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake.from_url(f"file://{tmp_path / 'lake'}")
    ids = [uuid.UUID(int=0), uuid.UUID("550e8400-e29b-41d4-a716-446655440000"), None]
    data = pa.table(
        {
            "id": pa.array([u.bytes if u else None for u in ids], pa.uuid()),
            "n": pa.array([1, 2, 3], pa.int64()),
        }
    )
    source = OneTable(data)
    assert land_table(lake, "app", source, "things", "r1", today=DAY).manifest is not None
    load_table(machine_pg, lake, "raw_binary", "app", "things")
    monkeypatch.setattr(pg_load, "binary_ready", lambda incoming, columns: False)
    load_table(machine_pg, lake, "raw_csv", "app", "things")

    got = rows(machine_pg, "select id, n from raw_binary.app__things order by n")
    want = rows(machine_pg, "select id, n from raw_csv.app__things order by n")
    assert got == want
    assert [r[0] for r in got] == ids


def test_a_widening_partition_still_loads_through_postgres_parsing(
    machine_pg: str, tmp_path: Path
) -> None:
    lake = Lake.from_url(f"file://{tmp_path / 'lake'}")
    source = OneTable(pa.table({"x": pa.array([1.5], pa.float32())}))
    land_table(lake, "app", source, "things", "r1", today=DAY)
    source.data = pa.table({"x": pa.array([0.1], pa.float64())})  # FLOAT widens to DOUBLE
    land_table(lake, "app", source, "things", "r2", today=DAY)
    load_table(machine_pg, lake, "raw", "app", "things")
    source.data = pa.table({"x": pa.array([0.1], pa.float32())})  # back into the DOUBLE column
    land_table(lake, "app", source, "things", "r3", today=DAY)

    load_table(machine_pg, lake, "raw", "app", "things")

    # As the CSV route parsed it: float32 0.1 printed as "0.1", read as the double 0.1.
    assert rows(machine_pg, "select x from raw.app__things order by _partition_id") == [
        (1.5,),
        (0.1,),
        (0.1,),
    ]


def test_a_nul_in_text_is_the_same_clear_error_as_before(
    machine_pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake.from_url(f"file://{tmp_path / 'lake'}")
    source = OneTable(pa.table({"n": pa.array([1, 2]), "t": pa.array(["ok", "a\x00b"])}))
    land_table(lake, "app", source, "things", "r1", today=DAY)

    with pytest.raises(LoadError) as binary:
        load_table(machine_pg, lake, "raw_binary", "app", "things")
    monkeypatch.setattr(pg_load, "binary_ready", lambda incoming, columns: False)
    with pytest.raises(LoadError) as csv:
        load_table(machine_pg, lake, "raw_csv", "app", "things")

    first = str(binary.value).splitlines()[0]
    assert first == str(csv.value).splitlines()[0]
    assert 'invalid byte sequence for encoding "UTF8": 0x00' in first
    assert first.startswith("app/things/ingest_date=2026-11-28/run=r1: ")


def copy_binary(url: str, query: str, columns: dict[str, str]) -> list[tuple[Any, ...]]:
    """DuckDB's rows of `query` encoded by binary_copy into a temporary table of the
    columns' PostgreSQL types, read back."""
    batch = duckdb.sql(query).fetch_arrow_table().combine_chunks().to_batches()[0]
    defs = ", ".join(f"{c} {to_postgres(t)}" for c, t in columns.items())
    with psycopg.connect(url) as conn:
        conn.execute(f"create temporary table t ({defs})")
        with conn.cursor().copy("copy t from stdin (format binary)") as copy:
            copy.write(HEADER)
            copy.write(encode_batch(batch, list(columns.values())))
            copy.write(TRAILER)
        return conn.execute("select * from t").fetchall()


def test_intervals_and_hugeints_from_duckdb_arrive_intact(machine_pg: str) -> None:
    got = copy_binary(
        machine_pg,
        "select * from (values "
        "(interval '1 year 2 months 3 days 04:05:06.789', "
        "99999999999999999999999999999999999999::hugeint), "
        "(interval '-3 days -00:00:00.000001', -12345678901234567890123456789::hugeint), "
        "(null, null)) v(i, h)",
        {"i": "INTERVAL", "h": "DECIMAL(38,0)"},
    )
    assert got == [
        (
            dt.timedelta(days=365 + 60 + 3, seconds=4 * 3600 + 5 * 60 + 6, microseconds=789000),
            D("99999999999999999999999999999999999999"),
        ),
        (dt.timedelta(days=-3, microseconds=-1), D("-12345678901234567890123456789")),
        (None, None),
    ]


def test_a_hugeint_beyond_38_digits_is_postgres_overflow_error(machine_pg: str) -> None:
    with pytest.raises(psycopg.errors.NumericValueOutOfRange, match="numeric field overflow"):
        copy_binary(
            machine_pg,
            "select 170141183460469231731687303715884105727::hugeint as h",
            {"h": "DECIMAL(38,0)"},
        )
