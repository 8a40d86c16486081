"""Raw partitions into PostgreSQL: types, empty partitions, drift and partial loads."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from millpond.core.registry import SourceItem, TableState
from millpond.ingest.lake import Lake
from millpond.ingest.landing import land_table
from millpond.targets.postgres.load import LoadError, load_table

pytestmark = pytest.mark.integration
DAY = dt.date(2026, 11, 28)


class Tables:
    """A source of Arrow tables, one new item per land."""

    def __init__(self) -> None:
        self.next: pa.Table | None = None
        self.count = 0
        self.replace = False
        self.primary_key: tuple[str, ...] = ()

    def items(self, table: str, state: TableState) -> list[SourceItem]:
        data = self.next
        assert data is not None
        self.count += 1
        return [
            SourceItem(
                name=f"{table}-{self.count}",
                fingerprint=f"item-{self.count}",
                size=data.nbytes,
                read=lambda: (data.schema, iter(data.to_batches() or [])),
                replace=self.replace,
                primary_key=self.primary_key,
            )
        ]

    def warnings(self) -> list[str]:
        return []


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.from_url(f"file://{tmp_path / 'lake'}")


def land(lake: Lake, source: Tables, data: pa.Table, run: str) -> None:
    source.next = data
    assert land_table(lake, "app", source, "things", run, today=DAY).manifest is not None


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def test_binary_nested_and_nanosecond_values_arrive_intact(machine_pg: str, lake: Lake) -> None:
    source = Tables()
    data = pa.table(
        {
            "id": pa.array([1, 2], pa.uint32()),
            "blob": pa.array([b"\x00\\x'\n", None], pa.binary()),
            "tags": pa.array([["a", "b"], []], pa.list_(pa.string())),
            "at": pa.array([1_700_000_000_123_456_789, None], pa.timestamp("ns")),
        }
    )
    land(lake, source, data, "r1")
    land(lake, source, data, "r2")  # the same types again must match what was stored

    loaded = load_table(machine_pg, lake, "raw", "app", "things")

    assert loaded.table_rows == 4
    got = rows(
        machine_pg, "select id, blob, tags, at from raw.app__things order by _partition_id, id"
    )
    assert got[0][:3] == (1, b"\x00\\x'\n", '["a","b"]')
    assert got[0][3] == dt.datetime(2023, 11, 14, 22, 13, 20, 123457)
    assert got[1][1:] == (None, "[]", None)


def test_an_empty_partition_is_recorded_without_changing_the_columns(
    machine_pg: str, lake: Lake
) -> None:
    source = Tables()
    land(lake, source, pa.table({"id": pa.array([1], pa.int64())}), "r1")
    land(lake, source, pa.table({"id": pa.array([], pa.string())}), "r2")  # header only

    loaded = load_table(machine_pg, lake, "raw", "app", "things")

    assert len(loaded.partitions) == 2 and loaded.table_rows == 1
    types = rows(
        machine_pg,
        "select data_type from information_schema.columns "
        "where table_name = 'app__things' and column_name = 'id'",
    )
    assert types == [("bigint",)]


def test_text_in_a_numeric_column_is_rejected_at_landing_and_the_rest_loads(
    machine_pg: str, lake: Lake
) -> None:
    source = Tables()
    land(lake, source, pa.table({"id": pa.array([1], pa.int64())}), "r1")
    source.next = pa.table({"id": pa.array(["A-7"], pa.string())})
    refused = land_table(lake, "app", source, "things", "r2", today=DAY)
    land(lake, source, pa.table({"id": pa.array([3], pa.int64())}), "r3")

    loaded = load_table(machine_pg, lake, "raw", "app", "things")

    assert refused.manifest is None
    assert (
        "things-2, row 1: column id is VARCHAR in this read ('A-7' is not a BIGINT), the table "
        "has BIGINT"
    ) in refused.rejected[0].reason
    assert len(loaded.partitions) == 2
    assert rows(machine_pg, "select id from raw.app__things order by id") == [(1,), (3,)]


def test_widening_under_a_view_is_a_clear_error_not_a_retry(machine_pg: str, lake: Lake) -> None:
    source = Tables()
    land(lake, source, pa.table({"n": pa.array([1], pa.int32())}), "r1")
    load_table(machine_pg, lake, "raw", "app", "things")
    with psycopg.connect(machine_pg, autocommit=True) as conn:
        conn.execute("create view public.stg_things as select n from raw.app__things")
    land(lake, source, pa.table({"n": pa.array([2.5], pa.float64())}), "r2")

    with pytest.raises(LoadError, match="views read it") as refused:
        load_table(machine_pg, lake, "raw", "app", "things")

    assert refused.value.retryable is False
    assert rows(machine_pg, "select n from raw.app__things") == [(1,)]


def test_an_empty_whole_snapshot_empties_the_table(machine_pg: str, lake: Lake) -> None:
    source = Tables()
    source.replace = True
    land(lake, source, pa.table({"id": pa.array([1, 2], pa.int64())}), "r1")
    load_table(machine_pg, lake, "raw", "app", "things")
    land(lake, source, pa.table({"id": pa.array([], pa.int64())}), "r2")

    loaded = load_table(machine_pg, lake, "raw", "app", "things")

    assert loaded.table_rows == 0
    assert rows(machine_pg, "select count(*) from raw.app__things") == [(0,)]


def test_a_partition_with_a_key_its_data_lacks_loads_its_rows_and_says_what_to_fix(
    machine_pg: str, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Landed before keys were checked at landing: the rows load, the load fails naming the
    setting, and the next partition with a fixed key makes the table whole (no lake drop)."""
    source = Tables()
    source.primary_key = ("nope",)
    with monkeypatch.context() as older_millpond:
        older_millpond.setattr("millpond.ingest.landing_items.check_keys", lambda *args: None)
        land(lake, source, pa.table({"id": [1, 2]}), "r1")

    with pytest.raises(LoadError) as refused:
        load_table(machine_pg, lake, "raw", "app", "things")

    assert "nope" in str(refused.value) and "columns: id" in str(refused.value)
    assert "sources.app.tables.things.primary_key" in str(refused.value)
    source.primary_key = ("id",)
    land(lake, source, pa.table({"id": [2, 3]}), "r2")
    load_table(machine_pg, lake, "raw", "app", "things")
    assert rows(machine_pg, "select id from raw.app__things__latest order by id") == [
        (1,),
        (2,),
        (3,),
    ]
