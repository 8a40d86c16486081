"""The `sql` source kind against real servers: PostgreSQL and MariaDB on this machine.

Rows are landed through the generic landing into a local lake and registered in a DuckDB
warehouse (the DuckDB target), as `extract.<source>.<table>` and `load.<source>.<table>` do.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import mariadb_execute, postgres_execute

from millpond.ingest.contract import TableConfigError
from millpond.ingest.lake import Lake
from millpond.ingest.landing import land_table, table_state
from millpond.ingest.sources.sql import SqlSource, SqlSourceConfig, SqlSourceError
from millpond.targets.duckdb.raw import LoadError, load_table

pytestmark = pytest.mark.integration
DAY = dt.date(2026, 11, 28)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.from_url(f"file://{tmp_path / 'lake'}")


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield con
    con.close()


def source(url: str, tables: dict[str, Any]) -> SqlSource:
    return SqlSource("billing", SqlSourceConfig(kind="sql", url=url, tables=tables))


def extract_and_load(
    lake: Lake, warehouse: duckdb.DuckDBPyConnection, src: SqlSource, table: str, run: str
) -> Any:
    landed = land_table(lake, "billing", src, table, run, today=DAY)
    load_table(warehouse, lake, "raw", "billing", table)
    return landed


def rows(warehouse: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return warehouse.execute(sql).fetchall()


INVOICES_PG = [
    "create table invoices (id integer primary key, customer text, amount numeric(12, 2), "
    "issued_at timestamptz, note text)",
    "insert into invoices values (1, 'Ada', 10.50, '2026-01-01 08:00+00', null), "
    "(2, 'Bob', 99999.99, '2026-01-02 09:30+00', 'rush'), "
    "(3, 'Cy', 0.01, '2026-01-03 10:00+00', '')",
]


def test_a_postgres_table_lands_with_faithful_types(machine_pg, lake, warehouse) -> None:
    postgres_execute(machine_pg, *INVOICES_PG)
    landed = extract_and_load(lake, warehouse, source(machine_pg, ["invoices"]), "invoices", "r1")

    assert landed.rows == 3
    assert rows(
        warehouse,
        "select id, customer, amount, issued_at, note from raw.billing__invoices order by id",
    ) == [
        (1, "Ada", decimal.Decimal("10.50"), dt.datetime(2026, 1, 1, 8, tzinfo=dt.UTC), None),
        (
            2,
            "Bob",
            decimal.Decimal("99999.99"),
            dt.datetime(2026, 1, 2, 9, 30, tzinfo=dt.UTC),
            "rush",
        ),
        (3, "Cy", decimal.Decimal("0.01"), dt.datetime(2026, 1, 3, 10, tzinfo=dt.UTC), ""),
    ]


def test_a_full_table_is_replaced_by_each_new_snapshot(machine_pg, lake, warehouse) -> None:
    postgres_execute(machine_pg, *INVOICES_PG)
    src = source(machine_pg, ["invoices"])
    extract_and_load(lake, warehouse, src, "invoices", "r1")
    postgres_execute(
        machine_pg,
        "delete from invoices where id = 3",
        "update invoices set customer = 'Ann' where id = 1",
    )

    extract_and_load(lake, warehouse, src, "invoices", "r2")

    assert len(lake.manifests("billing", "invoices")) == 2  # the lake keeps both snapshots
    assert rows(warehouse, "select id, customer from raw.billing__invoices order by id") == [
        (1, "Ann"),
        (2, "Bob"),
    ]


def test_incremental_runs_land_every_version_once_and_commit_the_max_cursor(
    machine_pg, lake, warehouse
) -> None:
    postgres_execute(
        machine_pg,
        "create table events (id integer, status text, updated_at timestamp)",
        "insert into events values (1, 'new', '2026-01-01 00:00'), (2, 'new', '2026-01-01 00:01')",
    )
    src = source(
        machine_pg,
        {"events": {"incremental": {"column": "updated_at"}, "primary_key": ["id"]}},
    )
    extract_and_load(lake, warehouse, src, "events", "r1")
    postgres_execute(
        machine_pg,
        "insert into events values (3, 'new', '2026-01-02 00:00')",
        "update events set status = 'paid', updated_at = '2026-01-02 00:05' where id = 1",
    )
    extract_and_load(lake, warehouse, src, "events", "r2")
    postgres_execute(
        machine_pg,
        "update events set status = 'void', updated_at = '2026-01-03 00:00' where id = 2",
    )
    third = extract_and_load(lake, warehouse, src, "events", "r3")
    nothing_new = extract_and_load(lake, warehouse, src, "events", "r4")

    assert third.rows == 1 and nothing_new.manifest is None
    history = rows(warehouse, "select id, status from raw.billing__events order by id, updated_at")
    assert history == [(1, "new"), (1, "paid"), (2, "new"), (2, "void"), (3, "new")]
    latest = rows(warehouse, "select id, status from raw.billing__events__latest order by id")
    assert latest == [(1, "paid"), (2, "void"), (3, "new")]
    assert table_state(lake.manifests("billing", "events")).cursor == "2026-01-03T00:00:00"


def test_a_lookback_rereads_late_rows_and_the_latest_view_keeps_each_key_once(
    machine_pg, lake, warehouse
) -> None:
    postgres_execute(
        machine_pg,
        "create table events (id integer, status text, updated_at timestamp)",
        "insert into events values (1, 'new', '2026-01-01 10:00')",
    )
    src = source(
        machine_pg,
        {
            "events": {
                "incremental": {"column": "updated_at", "lookback": 3600},
                "primary_key": ["id"],
            }
        },
    )
    extract_and_load(lake, warehouse, src, "events", "r1")
    # Committed late: its timestamp is before the cursor, inside the look-back window.
    postgres_execute(machine_pg, "insert into events values (2, 'late', '2026-01-01 09:30')")
    second = extract_and_load(lake, warehouse, src, "events", "r2")

    assert second.rows == 2  # the late row, and row 1 again (inside the window)
    latest = rows(warehouse, "select id, status from raw.billing__events__latest order by id")
    assert latest == [(1, "new"), (2, "late")]


def test_a_lookback_read_with_nothing_new_is_landed_once_and_later_rows_still_land(
    machine_pg, lake, warehouse
) -> None:
    """The cursor does not move when a run reads only its look-back window: every later run
    still asks the database (a read is known by what it returned, not where it started)."""
    postgres_execute(
        machine_pg,
        "create table events (id integer, status text, updated_at timestamp)",
        "insert into events values (1, 'new', '2026-01-01 10:00')",
    )
    spec = {"incremental": {"column": "updated_at", "lookback": 3600}, "primary_key": ["id"]}
    src = source(machine_pg, {"events": spec})
    extract_and_load(lake, warehouse, src, "events", "r1")
    window = extract_and_load(lake, warehouse, src, "events", "r2")  # row 1 again, once
    same = extract_and_load(lake, warehouse, src, "events", "r3")  # the same read: not again
    postgres_execute(machine_pg, "insert into events values (2, 'late', '2026-01-01 09:45')")
    late = extract_and_load(lake, warehouse, src, "events", "r4")
    postgres_execute(machine_pg, "insert into events values (3, 'new', '2026-01-01 11:00')")
    newer = extract_and_load(lake, warehouse, src, "events", "r5")

    assert (window.rows, same.rows, late.rows, newer.rows) == (1, 0, 2, 3)
    assert same.manifest is None and same.read["returned"] == 1
    latest = rows(warehouse, "select id, status from raw.billing__events__latest order by id")
    assert latest == [(1, "new"), (2, "late"), (3, "new")]
    assert table_state(lake.manifests("billing", "events")).cursor == "2026-01-01T11:00:00"


def test_a_query_with_an_initial_cursor_reads_only_from_there(machine_pg, lake, warehouse) -> None:
    postgres_execute(machine_pg, *INVOICES_PG)
    src = source(
        machine_pg,
        {
            "big_invoices": {
                "query": "select id, amount from invoices where amount > 1",
                "incremental": {"column": "id", "initial": 1},
            }
        },
    )
    landed = extract_and_load(lake, warehouse, src, "big_invoices", "r1")

    assert landed.rows == 1
    assert landed.manifest.cursor == 2
    assert rows(warehouse, "select id from raw.billing__big_invoices") == [(2,)]


def test_a_mariadb_table_lands_incrementally(mariadb, lake, warehouse) -> None:
    mariadb_execute(
        mariadb,
        "create table orders (id int primary key, amount decimal(10, 2), placed_at datetime, "
        "note varchar(20) null)",
        "insert into orders values (1, 5.25, '2026-02-01 10:00:00', null), "
        "(2, 7.00, '2026-02-02 11:00:00', 'x')",
    )
    src = source(mariadb, {"orders": {"incremental": {"column": "id"}}})
    extract_and_load(lake, warehouse, src, "orders", "r1")
    mariadb_execute(mariadb, "insert into orders values (3, 1.50, '2026-02-03 12:00:00', 'y')")
    second = extract_and_load(lake, warehouse, src, "orders", "r2")

    assert second.rows == 1 and second.manifest.cursor == 3
    assert rows(
        warehouse, "select id, amount, placed_at, note from raw.billing__orders order by id"
    ) == [
        (1, decimal.Decimal("5.25"), dt.datetime(2026, 2, 1, 10), None),
        (2, decimal.Decimal("7.00"), dt.datetime(2026, 2, 2, 11), "x"),
        (3, decimal.Decimal("1.50"), dt.datetime(2026, 2, 3, 12), "y"),
    ]


def test_a_password_never_reaches_manifests_or_errors(machine_pg, lake, warehouse) -> None:
    postgres_execute(machine_pg, *INVOICES_PG)
    secret = "s3cret-Pw-81"
    with_password = machine_pg.replace("postgres@", f"postgres:{secret}@")
    src = source(with_password, {"invoices": {}, "missing": {"table": "no_such_table"}})
    extract_and_load(lake, warehouse, src, "invoices", "r1")
    with pytest.raises(SqlSourceError) as failure:
        land_table(lake, "billing", src, "missing", "r1", today=DAY)

    assert secret not in str(failure.value) and "billing.missing" in str(failure.value)
    assert failure.value.retryable is False
    manifests = lake.manifests("billing", "invoices")
    assert manifests and all(secret not in m.to_json() for m in manifests)


def test_an_unreachable_database_is_a_retryable_error_without_the_password(lake) -> None:
    src = source("postgresql://postgres:hunter2pw@127.0.0.1:1/nowhere", ["t"])
    with pytest.raises(ConnectionError) as failure:
        land_table(lake, "billing", src, "t", "r1", today=DAY)
    assert "hunter2pw" not in str(failure.value) and "127.0.0.1:1" in str(failure.value)


# --- keys and types checked before a manifest exists ---------------------------------------------

EVENTS_PG = [
    "create table events (id integer, customer text, updated_at timestamp)",
    "insert into events values (1, 'Ada', '2026-01-01 00:00'), (2, 'Bob', '2026-01-01 00:01'), "
    "(3, 'Ada', '2026-01-01 00:02')",
]


def incremental(key: list[str]) -> dict[str, Any]:
    return {"events": {"incremental": {"column": "updated_at"}, "primary_key": key}}


def nothing_landed(lake: Lake, table: str) -> bool:
    folder = Path(lake.path("raw", "billing", table))
    return lake.manifests("billing", table) == [] and not any(
        p.is_file() for p in (folder.rglob("*") if folder.exists() else [])
    )


@pytest.mark.parametrize("server", ["postgres", "mariadb"])
def test_a_primary_key_that_is_not_a_column_fails_the_extract_and_lands_nothing(
    server, request, lake, warehouse
) -> None:
    url = request.getfixturevalue("machine_pg" if server == "postgres" else "mariadb")
    run = postgres_execute if server == "postgres" else mariadb_execute
    run(url, "create table events (id integer, customer text, updated_at timestamp)")
    run(url, "insert into events values (1, 'Ada', '2026-01-01 00:00')")

    with pytest.raises(TableConfigError) as failed:
        land_table(lake, "billing", source(url, incremental(["nope"])), "events", "r1", today=DAY)

    message = str(failed.value)
    assert "billing.events" in message and "primary_key column 'nope'" in message
    assert "columns: id, customer, updated_at" in message
    assert "sources.billing.tables.events.primary_key" in message
    assert failed.value.retryable is False
    assert nothing_landed(lake, "events")
    # Fixing the config is all it takes: no `lake drop`, nothing to clean up.
    extract_and_load(lake, warehouse, source(url, incremental(["id"])), "events", "r2")
    assert rows(warehouse, "select id from raw.billing__events__latest") == [(1,)]


def test_a_partition_landed_with_a_bad_key_by_an_older_millpond_is_cured_by_the_config(
    machine_pg, lake, warehouse, monkeypatch
) -> None:
    """A lake may hold a partition landed before keys were checked: its load says what to fix,
    and fixing the config is enough (no `lake drop`), even when no new rows arrive."""
    postgres_execute(machine_pg, *EVENTS_PG)
    with monkeypatch.context() as older_millpond:
        older_millpond.setattr("millpond.ingest.landing_items.check_keys", lambda *args: None)
        land_table(
            lake, "billing", source(machine_pg, incremental(["nope"])), "events", "r1", today=DAY
        )
    with pytest.raises(LoadError) as refused:
        load_table(warehouse, lake, "raw", "billing", "events")
    assert "nope" in str(refused.value) and "columns: id, customer, updated_at" in str(
        refused.value
    )
    assert "sources.billing.tables.events.primary_key" in str(refused.value)

    fixed = extract_and_load(
        lake, warehouse, source(machine_pg, incremental(["id"])), "events", "r2"
    )

    assert fixed.rows == 0 and fixed.manifest.primary_key == ["id"]  # nothing new, keys fixed
    assert rows(warehouse, "select count(*) from raw.billing__events") == [(3,)]
    assert rows(warehouse, "select count(*) from raw.billing__events__latest") == [(3,)]


def test_a_changed_primary_key_applies_without_waiting_for_new_rows(
    machine_pg, lake, warehouse
) -> None:
    postgres_execute(machine_pg, *EVENTS_PG)
    extract_and_load(lake, warehouse, source(machine_pg, incremental(["id"])), "events", "r1")
    assert rows(warehouse, "select count(*) from raw.billing__events__latest") == [(3,)]

    rekeyed = extract_and_load(
        lake, warehouse, source(machine_pg, incremental(["customer"])), "events", "r2"
    )

    assert rekeyed.rows == 0
    latest = rows(warehouse, "select customer, id from raw.billing__events__latest order by 1")
    assert latest == [("Ada", 3), ("Bob", 2)]  # each customer once, the latest version
    same = extract_and_load(
        lake, warehouse, source(machine_pg, incremental(["customer"])), "events", "r3"
    )
    assert same.manifest is None  # unchanged keys and nothing new: nothing lands


def test_a_column_whose_type_changed_at_the_source_names_the_row_and_keeps_raw_typed(
    machine_pg, lake, warehouse
) -> None:
    postgres_execute(
        machine_pg,
        "create table items (id integer, amount integer)",
        "insert into items values (1, 10), (2, 20)",
    )
    src = source(machine_pg, {"items": {"incremental": {"column": "id"}}})
    extract_and_load(lake, warehouse, src, "items", "r1")
    postgres_execute(
        machine_pg,
        "alter table items alter column amount type text",
        "insert into items values (3, '30'), (4, 'n/a')",
    )

    second = extract_and_load(lake, warehouse, src, "items", "r2")

    (rejection,) = second.rejected
    assert "billing.items after 2, row 2: column amount" in rejection.reason
    assert "'n/a' is not a INTEGER" in rejection.reason
    assert "fix the data at the source" in rejection.reason
    assert second.manifest is None
    assert rows(warehouse, "select typeof(amount) from raw.billing__items limit 1") == [
        ("INTEGER",)
    ]
