"""Load on DuckDB: landed partitions registered as raw views over the lake's Parquet, once each,
with their bookkeeping in one transaction; drift widened losslessly or refused by name."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

import millpond.targets.duckdb.raw as raw
from millpond.core.config import config_model
from millpond.ingest.lake import MANIFEST, Lake, Manifest, PartFile, SourceFile, raw_table_name
from millpond.ingest.landing import land_table
from millpond.ingest.sources.files import FilesSource
from millpond.ingest.sources.files.config import FilesSourceConfig
from millpond.targets.duckdb import DuckDBConfig, DuckDBTarget
from millpond.targets.duckdb.raw import (
    FILES,
    PARTITIONS,
    LoadError,
    load_partition,
    load_table,
    raw_row_count,
    relation_kind,
)

DAY = dt.date(2024, 3, 1)
SOURCE = FilesSourceConfig(kind="files", path="inbox", tables=["orders"])


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield connection
    connection.close()


def land_file(lake: Lake, inbox: Path, name: str, text: str, run_id: str) -> str:
    (inbox / name).write_text(text)
    result = land_table(lake, "erp", FilesSource("erp", SOURCE, inbox), "orders", run_id, DAY)
    assert result.manifest is not None
    return result.manifest.partition_id


def older_partition(lake: Lake, run_id: str, columns: dict[str, list]) -> str:
    """A partition that landing's contract check would reject, written straight to the lake
    as an older millpond (or a hand) left it: the loader must still refuse it by name."""
    folder = lake.partition_dir("erp", "orders", DAY.isoformat(), run_id)
    Path(folder).mkdir(parents=True)
    table = pa.table(columns)
    pq.write_table(table, f"{folder}/part-00000.parquet")
    size = Path(f"{folder}/part-00000.parquet").stat().st_size
    manifest = Manifest(
        partition_id=lake.partition_id("erp", "orders", DAY.isoformat(), run_id),
        source="erp",
        table="orders",
        run_id=run_id,
        ingest_date=DAY.isoformat(),
        landed_at=dt.datetime.now(dt.UTC).isoformat(),  # after the partitions landed before
        rows=table.num_rows,
        bytes=size,
        schema=[{"name": f.name, "type": str(f.type)} for f in table.schema],
        files=[SourceFile(f"orders_{run_id}.csv", f"sha-{run_id}", size, table.num_rows)],
        parts=[PartFile("part-00000.parquet", table.num_rows, size)],
    )
    lake.write_text_atomic(f"{folder}/{MANIFEST}", manifest.to_json())
    return manifest.partition_id


def manifest_path(lake: Lake, run_id: str) -> Path:
    return Path(lake.partition_dir("erp", "orders", DAY.isoformat(), run_id)) / MANIFEST


def load(con: duckdb.DuckDBPyConnection, lake: Lake):
    return load_table(con, lake, "raw", "erp", "orders")


def raw_rows(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(
        "select id, amount, _partition_id from raw.erp__orders order by id"
    ).fetchall()


def column_types(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return {r[0]: r[1] for r in con.execute("describe raw.erp__orders").fetchall()}


def registered(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(
        f"select partition_id, source, table_name, rows from raw.{PARTITIONS} order by 1"
    ).fetchall()


def registered_files(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(f"select path, partition_id from raw.{FILES} order by 1").fetchall()


# --- registering partitions ------------------------------------------------------------------


def test_raw_table_name_joins_source_and_table():
    assert raw_table_name("erp", "orders") == "erp__orders"


def test_a_landed_partition_becomes_a_raw_view_with_bookkeeping(con, lake, inbox):
    pid = land_file(lake, inbox, "orders.csv", "id,amount\n1,10.5\n2,3.25\n", "r1")

    result = load(con, lake)

    assert result.relation == "raw.erp__orders"
    assert result.partitions == [pid]
    assert result.rows == 2
    assert result.table_rows == 2
    (manifest,) = lake.manifests("erp", "orders")
    assert result.bytes == manifest.bytes
    assert relation_kind(con, "raw", "erp__orders") == "VIEW"
    assert raw_rows(con) == [(1, 10.5, pid), (2, 3.25, pid)]
    loaded_at = con.execute("select min(_loaded_at) from raw.erp__orders").fetchone()[0]
    assert isinstance(loaded_at, dt.datetime)
    assert registered(con) == [(pid, "erp", "orders", 2)]
    sha = con.execute(f"select manifest_sha256 from raw.{PARTITIONS}").fetchone()[0]
    assert sha == manifest.sha256


def test_the_raw_view_has_the_files_columns_and_the_bookkeeping_only(con, lake, inbox):
    # The lake's folder names (ingest_date=..., run=...) are layout, not data.
    land_file(lake, inbox, "orders.csv", "id,amount\n1,10.5\n", "r1")

    load(con, lake)

    assert list(column_types(con)) == ["id", "amount", "_partition_id", "_loaded_at"]


def test_source_columns_named_like_lake_partition_keys_keep_their_values(con, lake, inbox):
    land_file(lake, inbox, "orders.csv", "id,run,ingest_date\n1,fast,2020-01-01\n", "r1")

    load(con, lake)

    rows = con.execute("select id, run, ingest_date from raw.erp__orders").fetchall()
    assert rows == [(1, "fast", dt.date(2020, 1, 1))]


def test_the_view_reads_the_lake_files_in_place(con, lake, inbox):
    pid = land_file(lake, inbox, "orders.csv", "id,amount\n1,10.5\n", "r1")
    load(con, lake)

    (manifest,) = lake.manifests("erp", "orders")
    assert registered_files(con) == [(p, pid) for p in lake.part_paths(manifest)]
    assert raw.lake_files(con, "raw") == [Path(p) for p in lake.part_paths(manifest)]


def test_raw_row_count_is_zero_before_the_first_load(con):
    assert raw_row_count(con, "raw", "erp", "orders") == 0


def test_loading_twice_keeps_each_partition_once(con, lake, inbox):
    land_file(lake, inbox, "orders.csv", "id,amount\n1,10.5\n2,3.25\n", "r1")
    load(con, lake)

    again = load(con, lake)

    assert again.partitions == []
    assert again.rows == 0
    assert again.table_rows == 2
    assert raw_row_count(con, "raw", "erp", "orders") == 2
    assert len(registered(con)) == 1


def test_registering_the_same_partition_again_changes_nothing(con, lake, inbox):
    land_file(lake, inbox, "orders.csv", "id,amount\n1,10.5\n2,3.25\n", "r1")
    (manifest,) = lake.manifests("erp", "orders")
    load_partition(con, lake, "raw", manifest)
    before = (raw_rows(con), registered(con), registered_files(con))

    load_partition(con, lake, "raw", manifest)

    assert (raw_rows(con), registered(con), registered_files(con)) == before


def test_a_second_partition_is_appended(con, lake, inbox):
    first = land_file(lake, inbox, "orders_1.csv", "id,amount\n1,10.5\n2,3.25\n", "r1")
    load(con, lake)
    second = land_file(lake, inbox, "orders_2.csv", "id,amount\n3,1.0\n", "r2")

    result = load(con, lake)

    assert result.partitions == [second]
    assert result.rows == 1
    assert result.table_rows == 3
    assert raw_rows(con) == [(1, 10.5, first), (2, 3.25, first), (3, 1.0, second)]
    assert [r[0] for r in registered(con)] == sorted([first, second])


def test_partitions_landed_before_the_first_load_all_load(con, lake, inbox):
    first = land_file(lake, inbox, "orders_1.csv", "id,amount\n1,10.5\n", "r1")
    second = land_file(lake, inbox, "orders_2.csv", "id,amount\n2,3.0\n", "r2")

    result = load(con, lake)

    assert result.partitions == [first, second]
    assert raw_row_count(con, "raw", "erp", "orders") == 2


def test_loaded_rows_survive_reopening_the_warehouse(tmp_path, lake, inbox):
    land_file(lake, inbox, "orders.csv", "id,amount\n1,10.5\n", "r1")
    path = tmp_path / "w2.duckdb"
    with duckdb.connect(str(path)) as first:
        load(first, lake)

    with duckdb.connect(str(path)) as reopened:
        assert raw_row_count(reopened, "raw", "erp", "orders") == 1
        assert load(reopened, lake).partitions == []


def test_a_copied_raw_table_from_before_views_is_replaced_by_the_view(con, lake, inbox):
    pid = land_file(lake, inbox, "orders.csv", "id,amount\n1,10.5\n2,3.25\n", "r1")
    con.execute("create schema raw")
    con.execute("create table raw.erp__orders as select 1 as id, 10.5 as amount")

    load(con, lake)

    assert relation_kind(con, "raw", "erp__orders") == "VIEW"
    assert raw_rows(con) == [(1, 10.5, pid), (2, 3.25, pid)]


def test_a_copied_raw_table_holding_partitions_the_lake_lost_is_kept(con, lake, inbox):
    land_file(lake, inbox, "orders.csv", "id,amount\n1,10.5\n", "r1")
    con.execute("create schema raw")
    con.execute("create table raw.erp__orders as select 9 as id, 1.0 as amount")
    con.execute(
        "create table raw._millpond_partitions as select 'erp/orders/gone' as partition_id, "
        "'erp' as source, 'orders' as table_name"
    )

    with pytest.raises(LoadError, match=r"partitions the lake no longer has.*erp/orders/gone"):
        load(con, lake)

    assert relation_kind(con, "raw", "erp__orders") == "BASE TABLE"
    assert con.execute("select id from raw.erp__orders").fetchall() == [(9,)]


# --- refused partitions leave everything as it was ---------------------------------------------


def test_a_manifest_disagreeing_with_its_parts_fails_and_registers_nothing(con, lake, inbox):
    first = land_file(lake, inbox, "orders_1.csv", "id,amount\n1,10.5\n", "r1")
    load(con, lake)
    second = land_file(lake, inbox, "orders_2.csv", "id,amount\n2,2.0\n3,3.0\n", "r2")
    path = manifest_path(lake, "r2")
    data = json.loads(path.read_text())
    data["rows"] = 5
    path.write_text(json.dumps(data))

    with pytest.raises(LoadError, match=r"manifest says 5 rows, its Parquet files hold 2") as info:
        load(con, lake)

    assert second in str(info.value)
    assert raw_rows(con) == [(1, 10.5, first)]
    assert [r[0] for r in registered(con)] == [first]
    assert {r[1] for r in registered_files(con)} == {first}


def test_a_failed_first_partition_leaves_no_raw_relation(con, lake, inbox):
    land_file(lake, inbox, "orders.csv", "id,amount\n1,10.5\n", "r1")
    path = manifest_path(lake, "r1")
    data = json.loads(path.read_text())
    data["rows"] = 2
    path.write_text(json.dumps(data))

    with pytest.raises(LoadError):
        load(con, lake)

    assert relation_kind(con, "raw", "erp__orders") is None
    assert raw_row_count(con, "raw", "erp", "orders") == 0
    assert registered(con) == []
    assert registered_files(con) == []


def test_a_crash_while_registering_leaves_no_bookkeeping(con, lake, inbox, monkeypatch):
    land_file(lake, inbox, "orders.csv", "id,amount\n1,10.5\n", "r1")

    def crash(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(raw, "_recreate_view", crash)
    # Not a data problem: the error propagates as it is, so the orchestrator may retry.
    with pytest.raises(OSError, match="disk full"):
        load(con, lake)

    assert registered(con) == []
    assert registered_files(con) == []
    monkeypatch.undo()
    assert load(con, lake).rows == 1
    assert raw_row_count(con, "raw", "erp", "orders") == 1


def test_the_connection_is_usable_after_a_failed_load(con, lake, inbox):
    land_file(lake, inbox, "orders_1.csv", "id,amount\n1,10.5\n", "r1")
    load(con, lake)
    older_partition(lake, "r2", {"id": ["X"], "amount": [1.0]})
    with pytest.raises(LoadError):
        load(con, lake)

    con.execute("create table raw.after_failure as select 1 as x")

    assert con.execute("select x from raw.after_failure").fetchall() == [(1,)]


def test_a_lake_that_is_not_local_is_refused_with_what_to_do(tmp_path, con):
    lake = Lake(pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()), "lake")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "orders.csv").write_text("id,amount\n1,10.5\n")
    land_table(lake, "erp", FilesSource("erp", SOURCE, inbox), "orders", "r1", DAY)

    with pytest.raises(LoadError, match=r"needs a local lake"):
        load(con, lake)

    assert raw_row_count(con, "raw", "erp", "orders") == 0


# --- schema drift between partitions ---------------------------------------------------------


def test_a_new_column_is_added_and_older_partitions_read_null(con, lake, inbox):
    land_file(lake, inbox, "orders_1.csv", "id,amount\n1,10\n", "r1")
    load(con, lake)
    land_file(lake, inbox, "orders_2.csv", "id,amount,note\n2,20,late\n", "r2")

    load(con, lake)

    rows = con.execute("select id, note from raw.erp__orders order by id").fetchall()
    assert rows == [(1, None), (2, "late")]
    assert column_types(con)["note"] == "VARCHAR"


def test_decimals_after_integers_widen_the_column_instead_of_rounding(con, lake, inbox):
    land_file(lake, inbox, "orders_1.csv", "id,amount\n1,10\n2,20\n", "r1")
    load(con, lake)
    assert column_types(con)["amount"] == "BIGINT"
    land_file(lake, inbox, "orders_2.csv", "id,amount\n3,12.75\n4,0.4\n", "r2")

    load(con, lake)

    amounts = con.execute("select amount from raw.erp__orders order by id").fetchall()
    assert amounts == [(10.0,), (20.0,), (12.75,), (0.4,)]
    assert column_types(con)["amount"] == "DOUBLE"


def test_integers_after_decimals_keep_the_column_double(con, lake, inbox):
    land_file(lake, inbox, "orders_1.csv", "id,amount\n1,12.75\n", "r1")
    land_file(lake, inbox, "orders_2.csv", "id,amount\n2,20\n", "r2")

    load(con, lake)

    assert column_types(con)["amount"] == "DOUBLE"
    amounts = con.execute("select amount from raw.erp__orders order by id").fetchall()
    assert amounts == [(12.75,), (20.0,)]


def test_text_in_a_numeric_column_is_refused_naming_column_and_types(con, lake, inbox):
    first = land_file(lake, inbox, "orders_1.csv", "id,amount\n1,10\n", "r1")
    load(con, lake)
    bad = older_partition(lake, "r2", {"id": ["A-1"], "amount": [20]})

    with pytest.raises(
        LoadError, match=r"column id: the raw table has BIGINT, this partition has VARCHAR"
    ) as info:
        load(con, lake)

    assert bad in str(info.value)
    assert con.execute("select id, amount from raw.erp__orders").fetchall() == [(1, 10)]
    assert column_types(con)["id"] == "BIGINT"
    assert [r[0] for r in registered(con)] == [first]


def test_a_column_missing_from_a_partition_is_refused_by_name(con, lake, inbox):
    first = land_file(lake, inbox, "orders_1.csv", "id,amount\n1,10\n", "r1")
    load(con, lake)
    older_partition(lake, "r2", {"id": [2]})

    with pytest.raises(LoadError, match=re.escape("columns missing from this partition: amount")):
        load(con, lake)

    assert raw_rows(con) == [(1, 10, first)]
    assert [r[0] for r in registered(con)] == [first]


# --- many partitions -------------------------------------------------------------------------


def write_partition(lake: Lake, run_id: str, ids: list[int]) -> Manifest:
    """A landed partition written straight to the lake (landing a CSV per partition is slower)."""
    folder = lake.partition_dir("erp", "orders", DAY.isoformat(), run_id)
    Path(folder).mkdir(parents=True)
    part = f"{folder}/part-00000.parquet"
    pq.write_table(pa.table({"id": ids, "amount": [i * 0.5 for i in ids]}), part)
    size = Path(part).stat().st_size
    manifest = Manifest(
        partition_id=lake.partition_id("erp", "orders", DAY.isoformat(), run_id),
        source="erp",
        table="orders",
        run_id=run_id,
        ingest_date=DAY.isoformat(),
        landed_at="2024-03-01T00:00:00+00:00",  # ties are ordered by partition id
        rows=len(ids),
        bytes=size,
        schema=[{"name": "id", "type": "int64"}, {"name": "amount", "type": "double"}],
        files=[SourceFile(f"orders_{run_id}.csv", f"sha-{run_id}", size, len(ids))],
        parts=[PartFile("part-00000.parquet", len(ids), size)],
    )
    lake.write_text_atomic(f"{folder}/{MANIFEST}", manifest.to_json())
    return manifest


def test_a_thousand_small_partitions_all_count_through_the_view(con, lake):
    sizes = [2 + i % 2 for i in range(1000)]
    next_id = 0
    for i, size in enumerate(sizes):
        write_partition(lake, f"r{i:04d}", list(range(next_id, next_id + size)))
        next_id += size

    result = load(con, lake)

    assert len(result.partitions) == 1000
    assert result.rows == sum(sizes) == result.table_rows
    total = con.execute("select count(*), count(distinct id) from raw.erp__orders").fetchone()
    assert total == (sum(sizes), sum(sizes))
    assert con.execute(f"select count(*) from raw.{PARTITIONS}").fetchone() == (1000,)
    assert con.execute(f"select count(*) from raw.{FILES}").fetchone() == (1000,)


# --- the DuckDB target -----------------------------------------------------------------------


def test_the_duckdb_target_loads_under_its_lock_and_counts_rows(tmp_path, lake, inbox):
    stack = config_model()(root=tmp_path, warehouse={"target": "duckdb", "path": "w.duckdb"})
    target = DuckDBTarget(DuckDBConfig(path=Path("w.duckdb")), stack)
    land_file(lake, inbox, "orders.csv", "id,amount\n1,10.5\n2,3.25\n", "r1")

    loaded = target.load_table(lake, "erp", "orders")

    assert loaded.table_rows == 2
    assert target.row_count(loaded.relation) == 2
    assert (tmp_path / "w.duckdb").is_file()
    assert target.dbt_output() == {
        "type": "duckdb",
        "path": str(tmp_path / "w.duckdb"),
        "schema": "main",
        "threads": 1,
    }


def test_a_header_only_export_neither_blocks_nor_fixes_the_types(con, lake, inbox):
    land_file(lake, inbox, "orders_2024-01-01.csv", "id,amount\n", "r0")  # empty: all text
    land_file(lake, inbox, "orders_2024-01-02.csv", "id,amount\n1,10.5\n", "r1")
    land_file(lake, inbox, "orders_2024-01-03.csv", "amount,id\n", "r2")  # empty again, later
    land_file(lake, inbox, "orders_2024-01-04.csv", "id,amount\n2,3.25\n", "r3")

    result = load(con, lake)

    assert len(result.partitions) == 4 and result.table_rows == 2
    types = dict(
        con.execute("select column_name, column_type from (describe raw.erp__orders)").fetchall()
    )
    assert (types["id"], types["amount"]) == ("BIGINT", "DOUBLE")


def test_a_refused_partition_reports_the_ones_registered_before_it(con, lake, inbox):
    land_file(lake, inbox, "orders_2024-01-01.csv", "id,amount\n1,10.5\n", "r1")
    older_partition(lake, "r2", {"id": ["x"], "amount": ["oops"]})

    with pytest.raises(LoadError) as refused:
        load(con, lake)

    assert refused.value.loaded is not None
    assert len(refused.value.loaded.partitions) == 1 and refused.value.loaded.table_rows == 1
