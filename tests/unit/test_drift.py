"""Drift and bad rows are decided at landing, before a partition exists, then loaded for real.

Each case lands files through the files source and loads them into a DuckDB warehouse: a file
its table cannot take is rejected by name and lands nothing, the table's other files land and
load, and no partition is ever left that fails every later load.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from millpond.ingest.lake import Lake
from millpond.ingest.landing import LandingResult, land_table
from millpond.ingest.quarantine import read_quarantine
from millpond.ingest.sources.files import FilesSource
from millpond.ingest.sources.files.config import FilesSourceConfig
from millpond.targets.duckdb.raw import load_table

DAY = dt.date(2024, 3, 1)


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield connection
    connection.close()


def land(lake: Lake, inbox: Path, run: str, **table: Any) -> LandingResult:
    config = FilesSourceConfig(kind="files", path="inbox", tables={"orders": table})
    return land_table(lake, "erp", FilesSource("erp", config, inbox), "orders", run, today=DAY)


def drop(inbox: Path, name: str, text: str) -> None:
    (inbox / name).write_text(text)


def raw(con: duckdb.DuckDBPyConnection, lake: Lake, columns: str = "*") -> list[tuple]:
    """Load the table for real, then its rows."""
    load_table(con, lake, "raw", "erp", "orders")
    return con.execute(f"select {columns} from raw.erp__orders order by all").fetchall()


def types(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return {r[0]: r[1] for r in con.execute("describe raw.erp__orders").fetchall()}


# --- schema drift -------------------------------------------------------------------------------


def test_a_new_column_lands_and_older_rows_read_null(con, lake, inbox):
    drop(inbox, "orders_1.csv", "id,amount\n1,10\n")
    land(lake, inbox, "r1")
    drop(inbox, "orders_2.csv", "id,amount,note\n2,20,late\n")

    result = land(lake, inbox, "r2")

    assert result.rejected == [] and result.rows == 1
    assert raw(con, lake, "id, amount, note") == [(1, 10, None), (2, 20, "late")]


def test_a_new_column_is_rejected_when_the_table_says_fail(con, lake, inbox):
    drop(inbox, "orders_1.csv", "id,amount\n1,10\n")
    land(lake, inbox, "r1", on_schema_change="fail")
    drop(inbox, "orders_2.csv", "id,amount,note\n2,20,late\n")
    drop(inbox, "orders_3.csv", "id,amount\n3,30\n")

    result = land(lake, inbox, "r2", on_schema_change="fail")

    (rejection,) = result.rejected
    assert rejection.file == "orders_2.csv"
    assert "new columns note" in rejection.reason and "on_schema_change: fail" in rejection.reason
    assert [f.name for f in result.manifest.files] == ["orders_3.csv"]
    assert raw(con, lake, "id, amount") == [(1, 10), (3, 30)]


def test_a_dropped_column_is_rejected_and_the_next_good_file_still_lands(con, lake, inbox):
    drop(inbox, "orders_1.csv", "id,amount\n1,10\n")
    land(lake, inbox, "r1")
    drop(inbox, "orders_2.csv", "id\n2\n")

    second = land(lake, inbox, "r2")
    drop(inbox, "orders_3.csv", "id,amount\n3,30\n")
    third = land(lake, inbox, "r3")

    assert second.manifest is None
    reason = second.rejected[0].reason
    assert "orders_2.csv" in reason and "columns missing from the file: amount" in reason
    assert "on_schema_change: allow" in reason
    assert [r.file for r in third.rejected] == ["orders_2.csv"]  # still there, still refused
    assert [f.name for f in third.manifest.files] == ["orders_3.csv"]
    assert raw(con, lake, "id, amount") == [(1, 10), (3, 30)]


def test_a_dropped_column_lands_as_null_when_the_table_allows_it(con, lake, inbox):
    drop(inbox, "orders_1.csv", "id,amount\n1,10\n")
    land(lake, inbox, "r1", on_schema_change="allow")
    drop(inbox, "orders_2.csv", "id\n2\n")

    result = land(lake, inbox, "r2", on_schema_change="allow")

    assert result.rejected == [] and result.rows == 1
    assert raw(con, lake, "id, amount") == [(1, 10), (2, None)]
    assert types(con)["amount"] == "BIGINT"


def test_text_in_an_integer_column_is_rejected_until_declared(con, lake, inbox):
    drop(inbox, "orders_1.csv", "id,amount\n1000,10\n")
    land(lake, inbox, "r1")
    assert raw(con, lake, "id") == [(1000,)]
    drop(inbox, "orders_2.csv", "id,amount\nA1001,20\n")
    drop(inbox, "orders_3.csv", "id,amount\n1002,30\n")

    second = land(lake, inbox, "r2")

    (rejection,) = second.rejected
    assert rejection.file == "orders_2.csv"
    # The line and the value, and fixes that keep the raw column typed come first.
    for part in (
        "orders_2.csv, line 2",
        "column id is VARCHAR in this file ('A1001' is not a BIGINT), the table has BIGINT",
        "types: {id: BIGINT} and on_bad_rows: quarantine in sources.erp.tables.orders",
        "declaring it VARCHAR would turn the raw column into text for good",
    ):
        assert part in rejection.reason
    assert [f.name for f in second.manifest.files] == ["orders_3.csv"]  # the good one landed
    assert raw(con, lake, "id") == [(1000,), (1002,)]  # ...and loads; nothing blocks the table

    third = land(lake, inbox, "r3", types={"id": "VARCHAR"})

    assert third.rejected == []
    assert [f.name for f in third.manifest.files] == ["orders_2.csv"]  # the same file, now in
    assert raw(con, lake, "id, amount") == [("1000", 10), ("1002", 30), ("A1001", 20)]
    assert types(con)["id"] == "VARCHAR"


def test_a_corrected_re_export_of_a_rejected_file_lands(con, lake, inbox):
    drop(inbox, "orders_1.csv", "id,amount\n1,10\n")
    land(lake, inbox, "r1")
    drop(inbox, "orders_2.csv", "id,amount\nA1001,20\n")
    assert land(lake, inbox, "r2").rejected

    drop(inbox, "orders_2.csv", "id,amount\n1001,20\n")  # new content, same name
    result = land(lake, inbox, "r3")

    assert result.rejected == [] and result.rows == 1
    assert raw(con, lake, "id, amount") == [(1, 10), (1001, 20)]


def test_numbers_in_a_text_column_land_as_text(con, lake, inbox):
    drop(inbox, "orders_1.csv", "id,code\n1,A-7\n")
    land(lake, inbox, "r1")
    drop(inbox, "orders_2.csv", "id,code\n2,1001\n")

    result = land(lake, inbox, "r2")

    assert result.rejected == []
    assert raw(con, lake, "id, code") == [(1, "A-7"), (2, "1001")]


def test_a_changed_date_format_is_rejected_when_ambiguous_and_lands_once_declared(con, lake, inbox):
    drop(inbox, "orders_1.csv", "id,order_date\n1,2024-01-05\n")
    land(lake, inbox, "r1")
    drop(inbox, "orders_2.csv", "id,order_date\n2,02/06/2024\n3,03/07/2024\n")

    second = land(lake, inbox, "r2")
    third = land(lake, inbox, "r3", csv={"date_format": "%d/%m/%Y"})

    assert "column order_date" in second.rejected[0].reason
    assert second.manifest is None
    assert third.rejected == []
    assert raw(con, lake, "id, order_date") == [
        (1, dt.date(2024, 1, 5)),
        (2, dt.date(2024, 6, 2)),
        (3, dt.date(2024, 7, 3)),
    ]


def test_the_suggested_fix_keeps_the_raw_column_typed_and_quarantines_the_bad_line(
    con, lake, inbox
):
    drop(inbox, "orders_1.csv", "id,amount\n1000,10\n")
    land(lake, inbox, "r1")
    good = "".join(f"{i},1\n" for i in range(2000, 2200))
    drop(inbox, "orders_2.csv", "id,amount\n1001,20\nA1001,30\n" + good)
    refused = land(lake, inbox, "r2")
    assert "orders_2.csv, line 3" in refused.rejected[0].reason

    # What the message suggests: the table's type, and the bad rows kept aside.
    fixed = land(lake, inbox, "r3", types={"id": "BIGINT"}, on_bad_rows="quarantine")

    assert fixed.rejected == [] and fixed.rows == 201 and fixed.bad_rows == 1
    assert raw(con, lake, "count(*)") == [(202,)]
    assert types(con)["id"] == "BIGINT"  # raw stays typed: nothing widened for good


def test_dates_arriving_as_text_are_rejected_naming_both_types(con, lake, inbox):
    drop(inbox, "orders_1.csv", "id,order_date\n1,2024-01-05\n")
    land(lake, inbox, "r1")
    drop(inbox, "orders_2.csv", "id,order_date\n2,Jan 6 2024\n")

    result = land(lake, inbox, "r2")

    assert (
        "orders_2.csv, line 2: column order_date is VARCHAR in this file ('Jan 6 2024' is not "
        "a DATE), the table has DATE"
    ) in result.rejected[0].reason
    assert raw(con, lake, "id") == [(1,)]


# --- bad rows -----------------------------------------------------------------------------------

GOOD = "".join(f"{i},{i * 2}\n" for i in range(1, 201))


def test_a_bad_row_rejects_the_file_by_default_naming_its_line(con, lake, inbox):
    drop(inbox, "orders_1.csv", "id,amount\n1,2\n2,3,4\n3,4\n")
    drop(inbox, "orders_2.csv", "id,amount\n5,6\n")

    result = land(lake, inbox, "r1")

    assert "orders_1.csv, line 3" in result.rejected[0].reason
    assert [f.name for f in result.manifest.files] == ["orders_2.csv"]
    assert raw(con, lake, "id, amount") == [(5, 6)]


def test_quarantined_rows_are_kept_aside_with_line_and_reason(con, lake, inbox):
    lines = GOOD.splitlines()
    lines[9] = "10,20,surplus"  # line 11 of the file
    drop(inbox, "orders_1.csv", "id,amount\n" + "\n".join(lines) + "\n")

    result = land(lake, inbox, "r1", on_bad_rows="quarantine", max_bad_rows=5)

    assert result.rejected == []
    assert result.rows == 199 and result.bad_rows == 1
    (landed,) = result.manifest.files
    assert (landed.rows, landed.bad_rows) == (199, 1)
    (where,) = result.manifest.quarantine
    assert where.startswith("quarantine/erp/orders/")
    (bad,) = read_quarantine(lake, where).to_pylist()
    assert bad["file"] == "orders_1.csv" and bad["line"] == 11
    assert bad["text"] == "10,20,surplus" and "column" in bad["reason"].lower()
    assert len(raw(con, lake, "id")) == 199
    raw_parts = {Path(p).name for p in lake.part_paths(result.manifest)}
    assert raw_parts == {"part-00000.parquet"}
    assert pq.read_table(lake.part_paths(result.manifest)[0]).num_rows == 199


def test_too_many_bad_rows_reject_the_file(con, lake, inbox):
    lines = GOOD.splitlines()
    for i in (3, 30, 60):
        lines[i] = f"{i},x,y"
    drop(inbox, "orders_1.csv", "id,amount\n" + "\n".join(lines) + "\n")
    drop(inbox, "orders_2.csv", "id,amount\n500,1\n")

    result = land(lake, inbox, "r1", on_bad_rows="quarantine", max_bad_rows=2)

    (rejection,) = result.rejected
    assert "3 bad rows of 200" in rejection.reason and "max_bad_rows" in rejection.reason
    assert [f.name for f in result.manifest.files] == ["orders_2.csv"]
    assert result.manifest.quarantine == []
    assert raw(con, lake, "id") == [(500,)]


def test_a_bad_row_fraction_is_a_threshold_too(lake, inbox):
    lines = GOOD.splitlines()
    lines[5] = "6,1,2"
    drop(inbox, "orders_1.csv", "id,amount\n" + "\n".join(lines) + "\n")

    strict = land(lake, inbox, "r1", on_bad_rows="quarantine", max_bad_fraction=0.001)
    lenient = land(lake, inbox, "r2", on_bad_rows="quarantine", max_bad_fraction=0.01)

    assert strict.rejected and "bad rows of 200" in strict.rejected[0].reason
    assert lenient.rejected == [] and lenient.rows == 199
