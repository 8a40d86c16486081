"""Load: landed partitions into raw.<source>__<table> of a DuckDB file, once each, atomically."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from ingest.lake import MANIFEST, Lake
from ingest.landing import land_table
from ingest.loading import STATE_TABLE, LoadError, load_table, raw_row_count, raw_table_name
from millpond.config import FilesSourceConfig

DAY = dt.date(2024, 3, 1)
SOURCE = FilesSourceConfig(kind="files", path="inbox", tables=["orders"])


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield connection
    connection.close()


def land_file(lake: Lake, inbox: Path, name: str, text: str, run_id: str) -> str:
    (inbox / name).write_text(text)
    result = land_table(lake, "erp", SOURCE, inbox, "orders", run_id, today=DAY)
    assert result.manifest is not None
    return result.manifest.partition_id


def load(con: duckdb.DuckDBPyConnection, lake: Lake):
    return load_table(con, lake, "raw", "erp", "orders")


def raw_rows(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(
        "select id, amount, _partition_id from raw.erp__orders order by id"
    ).fetchall()


def state_rows(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(
        f"select partition_id, source, table_name, rows from raw.{STATE_TABLE} order by 1"
    ).fetchall()


def test_raw_table_name_joins_source_and_table():
    assert raw_table_name("erp", "orders") == "erp__orders"


def test_a_landed_partition_loads_into_the_raw_table_with_bookkeeping(con, lake, inbox):
    pid = land_file(lake, inbox, "orders.csv", "id,amount\n1,10.5\n2,3.25\n", "r1")

    result = load(con, lake)

    assert [m.partition_id for m in result.partitions] == [pid]
    assert result.rows == 2
    assert raw_rows(con) == [(1, 10.5, pid), (2, 3.25, pid)]
    columns = [r[0] for r in con.execute("describe raw.erp__orders").fetchall()]
    assert columns == ["id", "amount", "_partition_id", "_loaded_at"]
    loaded_at = con.execute("select min(_loaded_at) from raw.erp__orders").fetchone()[0]
    assert isinstance(loaded_at, dt.datetime)
    assert state_rows(con) == [(pid, "erp", "orders", 2)]
    assert raw_row_count(con, "raw", "erp", "orders") == 2


def test_raw_row_count_is_zero_before_the_first_load(con):
    assert raw_row_count(con, "raw", "erp", "orders") == 0


def test_loading_twice_keeps_each_partition_once(con, lake, inbox):
    land_file(lake, inbox, "orders.csv", "id,amount\n1,10.5\n2,3.25\n", "r1")
    load(con, lake)

    again = load(con, lake)

    assert again.partitions == []
    assert raw_row_count(con, "raw", "erp", "orders") == 2
    assert len(state_rows(con)) == 1


def test_a_second_partition_is_appended(con, lake, inbox):
    first = land_file(lake, inbox, "orders_1.csv", "id,amount\n1,10.5\n2,3.25\n", "r1")
    load(con, lake)
    second = land_file(lake, inbox, "orders_2.csv", "id,amount\n3,1.0\n", "r2")

    result = load(con, lake)

    assert [m.partition_id for m in result.partitions] == [second]
    assert raw_rows(con) == [(1, 10.5, first), (2, 3.25, first), (3, 1.0, second)]
    assert [r[0] for r in state_rows(con)] == sorted([first, second])


def test_partitions_landed_before_the_first_load_all_load(con, lake, inbox):
    land_file(lake, inbox, "orders_1.csv", "id,amount\n1,10.5\n", "r1")
    land_file(lake, inbox, "orders_2.csv", "id,amount\n2,3.0\n", "r2")

    result = load(con, lake)

    assert len(result.partitions) == 2
    assert raw_row_count(con, "raw", "erp", "orders") == 2


def test_a_partition_that_cannot_be_cast_fails_and_changes_nothing(con, lake, inbox):
    first = land_file(lake, inbox, "orders_1.csv", "id,amount\n1,10.5\n2,3.25\n", "r1")
    load(con, lake)
    bad = land_file(lake, inbox, "orders_2.csv", "id,amount\nA-17,1.0\n", "r2")

    with pytest.raises(LoadError, match=re.escape(bad)):
        load(con, lake)

    assert raw_rows(con) == [(1, 10.5, first), (2, 3.25, first)]
    assert [r[0] for r in state_rows(con)] == [first]


def test_a_manifest_disagreeing_with_its_parts_fails_and_changes_nothing(con, lake, inbox):
    first = land_file(lake, inbox, "orders_1.csv", "id,amount\n1,10.5\n", "r1")
    load(con, lake)
    second = land_file(lake, inbox, "orders_2.csv", "id,amount\n2,2.0\n3,3.0\n", "r2")
    manifest_path = Path(lake.root) / "raw/erp/orders" / f"ingest_date={DAY}" / "run=r2" / MANIFEST
    data = json.loads(manifest_path.read_text())
    data["rows"] = 5
    manifest_path.write_text(json.dumps(data))

    with pytest.raises(LoadError, match=r"manifest says 5 rows.*received 2"):
        load(con, lake)

    assert raw_rows(con) == [(1, 10.5, first)]
    assert [r[0] for r in state_rows(con)] == [first]
    assert second not in {r[2] for r in raw_rows(con)}


def test_a_failed_first_partition_leaves_no_raw_table(con, lake, inbox):
    land_file(lake, inbox, "orders.csv", "id,amount\n1,10.5\n", "r1")
    manifest_path = Path(lake.root) / "raw/erp/orders" / f"ingest_date={DAY}" / "run=r1" / MANIFEST
    data = json.loads(manifest_path.read_text())
    data["rows"] = 2
    manifest_path.write_text(json.dumps(data))

    with pytest.raises(LoadError):
        load(con, lake)

    assert raw_row_count(con, "raw", "erp", "orders") == 0
    assert state_rows(con) == []


def test_the_connection_is_usable_after_a_failed_load(con, lake, inbox):
    land_file(lake, inbox, "orders_1.csv", "id,amount\n1,10.5\n", "r1")
    load(con, lake)
    land_file(lake, inbox, "orders_2.csv", "id,amount\nX,1.0\n", "r2")
    with pytest.raises(LoadError):
        load(con, lake)

    con.execute("create table raw.after_failure as select 1 as x")

    assert con.execute("select x from raw.after_failure").fetchall() == [(1,)]


def test_loaded_rows_survive_reopening_the_warehouse(tmp_path, lake, inbox):
    land_file(lake, inbox, "orders.csv", "id,amount\n1,10.5\n", "r1")
    path = tmp_path / "w2.duckdb"
    with duckdb.connect(str(path)) as first:
        load(first, lake)

    with duckdb.connect(str(path)) as reopened:
        assert raw_row_count(reopened, "raw", "erp", "orders") == 1
        assert load(reopened, lake).partitions == []
