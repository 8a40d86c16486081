"""The `odbc` source kind through unixODBC and Debian's drivers: psqlODBC against the machine's
PostgreSQL and MariaDB Connector/ODBC against its MariaDB (the ERP-over-ODBC case).
"""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import pytest
from conftest import mariadb_execute, postgres_execute, require_server

from millpond.ingest.lake import Lake
from millpond.ingest.landing import land_table
from millpond.ingest.sources.odbc import OdbcSource, OdbcSourceConfig, secrets_of
from millpond.ingest.sources.tables import TableReadError
from millpond.targets.duckdb.raw import load_table

pytestmark = pytest.mark.integration
DAY = dt.date(2026, 11, 28)


def driver_installed(name: str) -> bool:
    ini = Path("/etc/odbcinst.ini")
    return ini.is_file() and f"[{name}]" in ini.read_text()


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.from_url(f"file://{tmp_path / 'lake'}")


@pytest.fixture
def warehouse(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield con
    con.close()


@pytest.fixture
def postgres_odbc(machine_pg: str) -> tuple[str, str]:
    require_server(driver_installed("PostgreSQL Unicode"), "psqlODBC driver not installed")
    parts = urlsplit(machine_pg)
    if not parts.hostname:
        pytest.skip("psqlODBC is tested over TCP (the machine's PostgreSQL), not a socket")
    database = parts.path.lstrip("/")
    return machine_pg, (
        f"Driver={{PostgreSQL Unicode}};Server={parts.hostname};Port={parts.port};"
        f"Database={database};"
    )


@pytest.fixture
def mariadb_odbc(mariadb: str) -> tuple[str, str]:
    require_server(driver_installed("MariaDB Unicode"), "MariaDB ODBC driver not installed")
    database = mariadb.rsplit("/", 1)[1]
    return mariadb, f"Driver={{MariaDB Unicode}};Server=127.0.0.1;Port=3306;Database={database};"


def source(connection: str, tables: Any, **extra: Any) -> OdbcSource:
    config = OdbcSourceConfig(kind="odbc", connection_string=connection, tables=tables, **extra)
    return OdbcSource("erp", config)


def land_and_load(lake: Lake, warehouse: Any, src: OdbcSource, table: str, run: str) -> Any:
    landed = land_table(lake, "erp", src, table, run, today=DAY)
    load_table(warehouse, lake, "raw", "erp", table)
    return landed


def test_postgres_through_psqlodbc_full_then_incremental(postgres_odbc, lake, warehouse) -> None:
    url, connection = postgres_odbc
    postgres_execute(
        url,
        "create table items (id integer, name text, price numeric(10, 2), changed timestamp)",
        "insert into items values (1, 'bolt', 0.10, '2026-03-01 08:00'), "
        "(2, 'nut', null, '2026-03-01 09:00')",
    )
    src = source(
        connection,
        {"items": {"incremental": {"column": "changed"}, "primary_key": ["id"]}},
        user="postgres",
    )
    first = land_and_load(lake, warehouse, src, "items", "r1")
    postgres_execute(
        url, "update items set price = 0.12, changed = '2026-03-02 10:00' where id = 1"
    )
    second = land_and_load(lake, warehouse, src, "items", "r2")

    assert (first.rows, second.rows) == (2, 1)
    assert second.manifest.cursor == "2026-03-02T10:00:00"
    latest = warehouse.execute(
        "select id, name, price from raw.erp__items__latest order by id"
    ).fetchall()
    assert latest == [(1, "bolt", decimal.Decimal("0.12")), (2, "nut", None)]


def test_mariadb_through_its_odbc_driver(mariadb_odbc, lake, warehouse) -> None:
    url, connection = mariadb_odbc
    mariadb_execute(
        url,
        "create table customers (id int primary key, name varchar(40), since date)",
        "insert into customers values (1, 'Acme GmbH', '2020-01-31'), (2, 'Zoë SA', null)",
    )
    landed = land_and_load(
        lake, warehouse, source(connection, ["customers"], user="root"), "customers", "r1"
    )

    assert landed.rows == 2
    assert warehouse.execute(
        "select * exclude (_partition_id, _loaded_at) from raw.erp__customers order by id"
    ).fetchall() == [
        (1, "Acme GmbH", dt.date(2020, 1, 31)),
        (2, "Zoë SA", None),
    ]


def test_a_bad_query_names_source_and_table_and_hides_the_password(postgres_odbc, lake) -> None:
    _, connection = postgres_odbc
    secret = "pw-odbc-77x"
    src = source(
        connection + f"PWD={secret};",
        {"broken": {"query": "select * from nowhere"}},
        user="postgres",
    )
    assert secrets_of(src.config) == [secret]
    with pytest.raises(TableReadError) as failure:
        land_table(lake, "erp", src, "broken", "r1", today=DAY)
    assert "erp.broken" in str(failure.value) and secret not in str(failure.value)


def test_a_missing_driver_is_a_clear_error(lake) -> None:
    src = source("Driver={No Such Driver};Server=x;", ["t"])
    with pytest.raises((TableReadError, ConnectionError), match=r"erp\.t"):
        land_table(lake, "erp", src, "t", "r1", today=DAY)


def test_config_needs_exactly_one_way_to_connect() -> None:
    with pytest.raises(ValueError, match="connection_string` or `dsn`"):
        OdbcSourceConfig(kind="odbc", tables=["t"])
    with pytest.raises(ValueError, match="connection_string` or `dsn`"):
        OdbcSourceConfig(kind="odbc", dsn="ERP", connection_string="Driver=x", tables=["t"])


def test_the_documented_odbc_example_lands_both_tables(postgres_odbc, lake, tmp_path) -> None:
    import yaml
    from conftest import REPO

    from millpond.core.config_loading import load_config
    from millpond.core.registry import SOURCES

    url, _ = postgres_odbc
    postgres_execute(
        url,
        "create table items (id integer, name text, changed timestamp)",
        "insert into items values (1, 'bolt', '2026-03-01 08:00')",
        "create schema erp",
        "create table erp.customers (id integer, name text)",
        "insert into erp.customers values (1, 'Acme')",
    )
    text = (REPO / "docs" / "sources.md").read_text().split("\n## odbc\n", 1)[1]
    example = yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])
    (tmp_path / "millpond.yml").write_text(yaml.safe_dump(example))
    env = {
        "ERP_HOST": "127.0.0.1",
        "ERP_DATABASE": urlsplit(url).path.lstrip("/"),
        "ERP_USER": "postgres",
        "ERP_PASSWORD": "unused-with-trust-auth",
    }
    config = load_config(tmp_path / "millpond.yml", env)
    erp = SOURCES.get("odbc").create("erp", config.sources["erp"], config)

    assert land_table(lake, "erp", erp, "items", "r1", today=DAY).rows == 1
    assert land_table(lake, "erp", erp, "customers", "r1", today=DAY).rows == 1
