"""Publish: snapshots of the marts that readers open read-only while the pipeline writes."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from millpond.targets.duckdb.publish import current_snapshot, open_published, prune, publish

SCHEMAS = ["marts", "aggregates"]


def make_warehouse(path: Path, customers: int = 3) -> Path:
    with duckdb.connect(str(path)) as con:
        con.execute("create schema if not exists raw")
        con.execute("create schema if not exists staging")
        con.execute("create schema if not exists marts")
        con.execute("create schema if not exists aggregates")
        con.execute("create or replace table raw.erp__orders as select 1 as id")
        con.execute(
            "create or replace table staging.stg_customers as "
            f"select range as id, 'c' || range as name from range({customers})"
        )
        con.execute("create or replace view staging.stg_orders as select * from raw.erp__orders")
        con.execute(
            "create or replace table marts.dim_customers as select * from staging.stg_customers"
        )
        con.execute(
            "create or replace view marts.v_big_customers as "
            "select * from marts.dim_customers where id > 0"
        )
        con.execute(
            "create or replace table aggregates.agg_customers as "
            "select count(*) as customers from marts.dim_customers"
        )
    return path


def relations(path: Path) -> dict[str, str]:
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(
            "select table_schema || '.' || table_name, table_type from information_schema.tables"
        ).fetchall()
    return dict(rows)


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    return make_warehouse(tmp_path / "warehouse.duckdb")


@pytest.fixture
def published(tmp_path: Path) -> Path:
    return tmp_path / "published"


def test_publish_copies_only_the_chosen_schemas_with_views_as_tables(warehouse, published):
    result = publish(warehouse, published, "run1", SCHEMAS, keep=5)

    assert result.path == published / "run1.duckdb"
    assert relations(result.path) == {
        "marts.dim_customers": "BASE TABLE",
        "marts.v_big_customers": "BASE TABLE",
        "aggregates.agg_customers": "BASE TABLE",
    }
    assert result.tables == {
        "aggregates.agg_customers": 1,
        "marts.dim_customers": 3,
        "marts.v_big_customers": 2,
    }
    assert result.rows == 6


def test_current_points_at_the_new_snapshot(warehouse, published):
    publish(warehouse, published, "run1", SCHEMAS, keep=5)
    result = publish(warehouse, published, "run2", SCHEMAS, keep=5)

    assert current_snapshot(published) == result.path.resolve()
    assert os.readlink(published / "current") == "run2.duckdb"
    assert not list(published.glob(".*tmp"))


def test_open_published_reads_the_current_snapshot_read_only(warehouse, published):
    publish(warehouse, published, "run1", SCHEMAS, keep=5)

    con = open_published(published)
    try:
        assert con.execute("select count(*) from marts.dim_customers").fetchone() == (3,)
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("create table marts.x as select 1")
    finally:
        con.close()


def test_nothing_published_yet_is_a_clear_error(published):
    published.mkdir()

    assert current_snapshot(published) is None
    with pytest.raises(FileNotFoundError, match="nothing published yet"):
        open_published(published)


def test_a_reader_keeps_its_snapshot_while_a_new_one_is_published(tmp_path, warehouse, published):
    publish(warehouse, published, "run1", SCHEMAS, keep=1)
    reader = open_published(published)
    try:
        make_warehouse(warehouse, customers=10)

        publish(warehouse, published, "run2", SCHEMAS, keep=1)

        assert reader.execute("select count(*) from marts.dim_customers").fetchone() == (3,)
        with open_published(published) as fresh:
            assert fresh.execute("select count(*) from marts.dim_customers").fetchone() == (10,)
    finally:
        reader.close()


def test_publishing_while_the_warehouse_is_open_elsewhere_in_the_process(warehouse, published):
    # The pipeline's own connection to the warehouse must not stop publish.
    with duckdb.connect(str(warehouse)) as pipeline:
        pipeline.execute("create or replace table marts.extra as select 42 as answer")

        result = publish(warehouse, published, "run1", SCHEMAS, keep=5)

    assert result.tables["marts.extra"] == 1


def test_publishing_with_no_tables_raises_and_keeps_current(tmp_path, warehouse, published):
    publish(warehouse, published, "run1", SCHEMAS, keep=5)

    with pytest.raises(RuntimeError, match="nothing to publish"):
        publish(warehouse, published, "run2", ["no_such_schema"], keep=5)

    assert current_snapshot(published) == (published / "run1.duckdb").resolve()
    assert not (published / "run2.duckdb").exists()


def test_first_publish_with_no_tables_leaves_nothing_published(tmp_path, published):
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()

    with pytest.raises(RuntimeError):
        publish(empty, published, "run1", SCHEMAS, keep=5)

    assert current_snapshot(published) is None


def test_republishing_the_same_run_replaces_its_snapshot(warehouse, published):
    publish(warehouse, published, "run1", SCHEMAS, keep=5)
    make_warehouse(warehouse, customers=7)

    result = publish(warehouse, published, "run1", SCHEMAS, keep=5)

    assert result.tables["marts.dim_customers"] == 7
    with open_published(published) as con:
        assert con.execute("select count(*) from marts.dim_customers").fetchone() == (7,)


def touch_snapshot(folder: Path, name: str, mtime: float) -> Path:
    path = folder / f"{name}.duckdb"
    path.write_bytes(b"")
    os.utime(path, (mtime, mtime))
    return path


def test_prune_keeps_the_newest_snapshots(tmp_path):
    folder = tmp_path / "published"
    folder.mkdir()
    for i in range(5):
        touch_snapshot(folder, f"run{i}", 1_000_000 + i)
    (folder / "current").symlink_to("run4.duckdb")

    removed = prune(folder, keep=2)

    assert removed == 3
    assert sorted(p.name for p in folder.glob("*.duckdb")) == ["run3.duckdb", "run4.duckdb"]


def test_prune_never_deletes_the_current_snapshot(tmp_path):
    folder = tmp_path / "published"
    folder.mkdir()
    for i in range(4):
        touch_snapshot(folder, f"run{i}", 1_000_000 + i)
    # e.g. a snapshot published by an older run was re-pointed to by hand
    (folder / "current").symlink_to("run0.duckdb")

    removed = prune(folder, keep=1)

    assert removed == 2
    assert sorted(p.name for p in folder.glob("*.duckdb")) == ["run0.duckdb", "run3.duckdb"]
    assert current_snapshot(folder) == (folder / "run0.duckdb").resolve()


def test_publish_prunes_to_keep(warehouse, published):
    for run in ["run1", "run2", "run3"]:
        publish(warehouse, published, run, SCHEMAS, keep=2)

    assert sorted(p.name for p in published.glob("*.duckdb")) == ["run2.duckdb", "run3.duckdb"]
    assert current_snapshot(published) == (published / "run3.duckdb").resolve()


def test_a_later_publish_becomes_current_whatever_its_run_id_spells(warehouse, published):
    # A manually triggered run ('manual__...') sorts after a scheduled one ('2026...'): the
    # order of publishing, not the run ids' spelling, decides which snapshot readers get.
    publish(warehouse, published, "manual__2026-11-28T09:00:00", ["marts"], keep=5)
    make_warehouse(warehouse, customers=9)

    later = publish(warehouse, published, "20261128T100000Z-abcdef", ["marts"], keep=5)

    assert current_snapshot(published) == later.path.resolve()
    with open_published(published) as con:
        assert con.execute("select count(*) from marts.dim_customers").fetchone() == (9,)


def test_a_scheduled_run_published_first_is_replaced_by_a_later_manual_one(warehouse, published):
    publish(warehouse, published, "20261128T100000Z-abcdef", ["marts"], keep=5)
    make_warehouse(warehouse, customers=4)

    later = publish(warehouse, published, "manual__2026-11-28T09:00:00", ["marts"], keep=5)

    assert current_snapshot(published) == later.path.resolve()
    assert (published / "20261128T100000Z-abcdef.duckdb").exists()
    with open_published(published) as con:
        assert con.execute("select count(*) from marts.dim_customers").fetchone() == (4,)


def test_a_publish_removes_half_written_snapshots_of_killed_publishes(warehouse, published):
    published.mkdir()
    stale = [published / ".20261201T060000Z-dead.duckdb.tmp", published / ".x.duckdb.tmp.wal"]
    for path in stale:
        path.write_bytes(b"half a snapshot")
    kept = published / "notes.txt"
    kept.write_text("not a snapshot")

    publish(warehouse, published, "run2", SCHEMAS, keep=3)

    assert [p for p in stale if p.exists()] == []
    assert kept.exists() and current_snapshot(published) == published / "run2.duckdb"
