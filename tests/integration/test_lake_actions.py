"""`millpond lake ls|drop` and `millpond backfill` on a real lake, DuckDB warehouse and ledger:
a partition taken back leaves lake and raw relation and is recorded; a backfill re-lands
from the inbox or replays from the lake, and twice changes nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest
from conftest import millpond

from millpond.core.config_loading import load_config
from millpond.core.registry import SourceItem
from millpond.ingest.landing import land_table
from millpond.ingest.replay import PartitionNotFound, reland_partition
from millpond.nodes.extract import source_of
from millpond.runtime import lake_actions
from millpond.runtime.context import RunContext

DAY1, DAY2 = dt.date(2024, 3, 1), dt.date(2024, 3, 2)


@pytest.fixture
def ctx(tmp_path: Path, machine_pg: str) -> RunContext:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "millpond.yml").write_text(
        f"""
metadata: {{url: "{machine_pg}"}}
sources:
  erp: {{kind: files, path: inbox, tables: [orders, customer]}}
"""
    )
    return RunContext(load_config(tmp_path / "millpond.yml", {}), "test", sources_only=True)


def land(ctx: RunContext, name: str, text: str, run_id: str, day: dt.date) -> str:
    inbox = ctx.config.resolve("inbox")
    (inbox / name).write_text(text)
    source = source_of(ctx, "erp")
    manifest = land_table(ctx.lake, "erp", source, "orders", run_id, day).manifest
    assert manifest is not None
    return manifest.partition_id


def raw_rows(ctx: RunContext) -> list[tuple]:
    import duckdb

    with duckdb.connect(str(ctx.target.path), read_only=True) as con:
        return con.execute(
            "select * exclude (_loaded_at) from raw.erp__orders order by id"
        ).fetchall()


def actions(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select action, partition_id from millpond.lake_actions order by at, action"
        ).fetchall()


def test_backfill_relands_or_replays_and_twice_changes_nothing(ctx, machine_pg):
    first = land(ctx, "orders_1.csv", "id,amount\n1,10.5\n2,3.25\n", "r1", DAY1)
    second = land(ctx, "orders_2.csv", "id,amount\n3,7.75\n", "r2", DAY2)
    ctx.target.load_table(ctx.lake, "erp", "orders")
    before = raw_rows(ctx)
    assert [r[-1] for r in before] == [first, first, second]  # _partition_id

    rows = lake_actions.list_partitions(ctx, "erp.orders")
    assert [(r.partition_id, r.rows, r.files, r.loaded) for r in rows] == [
        (first, 2, 1, True),
        (second, 1, 1, True),
    ]
    steps = lake_actions.backfill(ctx, "erp", "orders", DAY1, DAY2)
    assert [(s.action, s.partition_id) for s in steps] == [("reland", first), ("reland", second)]
    assert raw_rows(ctx) == before
    again = lake_actions.backfill(ctx, "erp", None, DAY1, DAY2)
    assert [s.action for s in again] == ["reland", "reland"]
    assert raw_rows(ctx) == before
    manifests = ctx.lake.manifests("erp", "orders")
    assert [m.partition_id for m in manifests] == [first, second]  # history order kept

    # The export is gone from the inbox: the partition is replayed from the lake.
    (ctx.config.resolve("inbox") / "orders_1.csv").unlink()
    replayed = lake_actions.backfill(ctx, "erp", "orders", DAY1, DAY1)
    assert [(s.action, s.partition_id) for s in replayed] == [("replay", first)]
    assert raw_rows(ctx) == before
    assert lake_actions.backfill(ctx, "erp", "orders", DAY2 + dt.timedelta(1), DAY2) == []
    assert [a for a, _ in actions(machine_pg)].count("reland") == 4
    assert ("replay", first) in actions(machine_pg)


def test_drop_takes_a_partition_out_of_lake_and_warehouse_and_records_it(ctx, machine_pg):
    first = land(ctx, "orders_1.csv", "id,amount\n1,10.5\n2,3.25\n", "r1", DAY1)
    second = land(ctx, "orders_2.csv", "id,amount\n3,7.75\n", "r2", DAY2)
    ctx.target.load_table(ctx.lake, "erp", "orders")

    dropped = lake_actions.drop(ctx, first)

    assert dropped.rows == 2
    assert [r[0] for r in raw_rows(ctx)] == [3]
    assert [m.partition_id for m in ctx.lake.manifests("erp", "orders")] == [second]
    assert not Path(ctx.lake.partition_dir("erp", "orders", str(DAY1), "r1")).exists()
    assert actions(machine_pg) == [("drop", first)]
    with pytest.raises(PartitionNotFound, match="no partition"):
        lake_actions.drop(ctx, first)
    with pytest.raises(ValueError, match="not a partition id"):
        lake_actions.drop(ctx, "erp/orders/r1")
    with pytest.raises(ValueError, match="no table 'nope'"):
        lake_actions.list_partitions(ctx, "erp.nope")
    lake_actions.drop(ctx, second)  # the last one: the raw view goes, as before any load
    assert lake_actions.list_partitions(ctx) == []
    assert ctx.target.loaded_partitions("erp", "orders") == set()


def test_a_failed_reland_puts_the_partition_back(ctx):
    first = land(ctx, "orders_1.csv", "id,amount\n1,10.5\n2,3.25\n", "r1", DAY1)
    (manifest,) = ctx.lake.manifests("erp", "orders")
    schema = pa.schema([("id", pa.int64())])

    def broken():
        yield pa.record_batch([pa.array([1])], schema=schema)
        raise ValueError("the export cannot be read any more")

    item = SourceItem("orders_1.csv", manifest.files[0].sha256, 1, lambda: (schema, broken()))
    with pytest.raises(ValueError, match="cannot be read"):
        reland_partition(ctx.lake, manifest, [item])

    assert ctx.lake.manifests("erp", "orders") == [manifest]
    assert ctx.lake.manifests("erp", "orders")[0].partition_id == first
    folder = Path(ctx.lake.partition_dir("erp", "orders", str(DAY1), "r1"))
    assert sorted(p.name for p in folder.iterdir()) == ["_manifest.json", "part-00000.parquet"]
    assert not list(Path(ctx.lake.root).rglob("*.bak"))


def test_lake_commands_have_examples_in_their_help(tmp_path):
    for command in (["lake", "ls"], ["lake", "drop"], ["backfill"]):
        shown = millpond(tmp_path, *command, "--help")
        assert shown.returncode == 0, shown.stderr
        assert "Examples" in shown.stdout and "millpond " + command[0] in shown.stdout
