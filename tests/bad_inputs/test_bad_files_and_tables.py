"""Bad inputs of the files and database sources, table-driven: each case lands through the real
landing code into a lake in a tmp folder and asserts what a user would see.

A refused case asserts the message names the file (or table), the column and the setting to
change, and that nothing landed: no manifest, no partition folder, no part. A case whose input
is odd but valid asserts the documented behaviour instead.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import mariadb_available, postgres_execute
from pydantic import ValidationError

from millpond.ingest.contract import TableConfigError
from millpond.ingest.lake import Lake
from millpond.ingest.landing import LandingResult, land_table
from millpond.ingest.sources.files import FilesSource
from millpond.ingest.sources.files.config import FilesSourceConfig
from millpond.ingest.sources.sql import SqlSource, SqlSourceConfig, SqlSourceError

DAY = dt.date(2024, 3, 1)
Content = str | bytes | Callable[[Path], None]


def workbook(sheets: dict[str, list[list[Any]]]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        book = openpyxl.Workbook()
        book.remove(book.active)
        for name, rows in sheets.items():
            sheet = book.create_sheet(name)
            for row in rows:
                sheet.append(row)
        book.save(path)

    return write


def parquet(table: pa.Table) -> Callable[[Path], None]:
    return lambda path: pq.write_table(table, path)


@dataclass(frozen=True)
class Case:
    """Files dropped into the inbox (in order, one run each when `runs` says so), the source's
    settings, the table landed, and what the user must see."""

    id: str
    files: dict[str, Content]
    tables: Any
    table: str = "orders"
    source: dict[str, Any] = field(default_factory=dict)
    # Substrings the rejection (or the error) must contain.
    says: tuple[str, ...] = ()
    # "rejected": the last file is rejected, nothing of it lands; "config": the configuration
    # is refused before any file is read; "lands": the documented behaviour, checked by `rows`.
    outcome: str = "rejected"
    rows: list[dict[str, Any]] | None = None
    # Files landed in an earlier run, before `files` (a table with a history).
    before: dict[str, Content] = field(default_factory=dict)


def drop(inbox: Path, name: str, content: Content) -> None:
    path = inbox / name
    if callable(content):
        content(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


def land(lake: Lake, inbox: Path, case: Case, run: str) -> LandingResult:
    config = FilesSourceConfig(kind="files", path="inbox", tables=case.tables, **case.source)
    return land_table(lake, "erp", FilesSource("erp", config, inbox), case.table, run, today=DAY)


def partitions(lake: Lake, table: str) -> list[str]:
    """Every file of the table's partitions (parts, manifests, hidden staged parts) and every
    `run=` folder, complete or not."""
    root = Path(lake.path("raw", "erp", table))
    found = [p for p in root.rglob("*") if p.is_file() or p.name.startswith("run=")]
    return sorted(str(p.relative_to(root)) for p in found)


def rows_of(lake: Lake, result: LandingResult) -> list[dict[str, Any]]:
    assert result.manifest is not None, result.rejected
    return pa.concat_tables(pq.read_table(p) for p in lake.part_paths(result.manifest)).to_pylist()


ORDERS = "id,amount\n1,10.5\n2,20.25\n"

CASES = [
    # --- delimiters ----------------------------------------------------------------------------
    Case(
        "delimiter-semicolon-on-comma-file",
        {"orders.csv": "a,b,c\n1,2,3\n"},
        {"orders": {"csv": {"delimiter": ";"}}},
        says=("orders.csv", "delimiter ';' found one column 'a,b,c'", "set csv.delimiter: ','"),
    ),
    Case(
        "delimiter-comma-on-semicolon-file",
        {"orders.csv": "id;amount\n1;10\n"},
        {"orders": {"csv": {"delimiter": ","}}},
        says=("orders.csv", "delimiter ','", "'id;amount'", "set csv.delimiter: ';'"),
    ),
    Case(
        "delimiter-pipe-on-tab-file",
        {"orders.txt": "id\tamount\n1\t10\n"},
        {"orders": {"csv": {"delimiter": "|"}}},
        says=("orders.txt", "delimiter '|'", "set csv.delimiter: '\\t'"),
    ),
    Case(
        "source-delimiter-on-another-dialect",
        {"orders.csv": "id|amount\n1|10\n"},
        {"orders": {}},
        source={"csv": {"delimiter": ";"}},
        says=("orders.csv", "delimiter ';'", "set csv.delimiter: '|'"),
    ),
    Case(
        "one-column-file-with-a-delimiter-set-lands",
        {"orders.csv": "id\n1\n2\n"},
        {"orders": {"csv": {"delimiter": ";"}}},
        outcome="lands",
        rows=[{"id": 1}, {"id": 2}],
    ),
    Case(
        "a-quoted-comma-in-a-one-column-header-is-not-a-delimiter",
        {"orders.csv": '"name, full"\nAda\n'},
        {"orders": {"csv": {"delimiter": ";"}}},
        outcome="lands",
        rows=[{"name, full": "Ada"}],
    ),
    Case(
        "ragged-row-too-many-fields",
        {"orders.csv": "id,amount\n1,10\n2,20,30\n"},
        {"orders": {}},
        says=("orders.csv, line 3",),
    ),
    Case(
        "ragged-row-too-few-fields",
        {"orders.csv": "id,amount\n1,10\n2\n"},
        {"orders": {}},
        says=("orders.csv, line 3",),
    ),
    Case(
        "unterminated-quote",
        {"orders.csv": 'id,note\n1,"open\n2,x\n'},
        {"orders": {}},
        says=("orders.csv, line 2",),
    ),
    Case(
        "quarantine-above-threshold",
        {"orders.csv": "id,amount\n1,10\n2,20,30\n3,30,40\n"},
        {"orders": {"on_bad_rows": "quarantine", "max_bad_rows": 1}},
        says=("orders.csv", "2 bad rows", "line 3", "max_bad_rows", "sources.erp.tables.orders"),
    ),
    Case(
        "line-too-long",
        {"orders.csv": "id,note\n1," + "x" * (3 << 20) + "\n"},
        {"orders": {}},
        says=("orders.csv", "csv.max_line_size"),
    ),
    # --- encodings -----------------------------------------------------------------------------
    Case(
        "cp1252-read-as-utf8",
        {"orders.csv": "id,city\n1,K\u00f6ln\n".encode("cp1252")},
        {"orders": {}},
        says=("orders.csv, line 2", "not utf-8", "csv.encoding"),
    ),
    Case(
        "cp1252-after-good-lines-names-the-line",
        {"orders.csv": "id,city\n1,Bonn\n2,Bonn\n3,K\u00f6ln\n".encode("cp1252")},
        {"orders": {}},
        says=("orders.csv, line 4", "csv.encoding"),
    ),
    Case(
        "utf8-declared-as-ascii",
        {"orders.csv": "id,city\n1,K\u00f6ln\n"},
        {"orders": {"csv": {"encoding": "ascii"}}},
        says=("orders.csv, line 2", "not ascii", "csv.encoding"),
    ),
    Case(
        "unknown-encoding",
        {"orders.csv": ORDERS},
        {"orders": {"csv": {"encoding": "klingon-8"}}},
        outcome="config",
        says=("unknown encoding 'klingon-8'",),
    ),
    Case(
        "utf16-with-bom-lands-undeclared",
        {"orders.csv": "id,city\n1,Z\u00fcrich\n".encode("utf-16")},
        {"orders": {}},
        outcome="lands",
        rows=[{"id": 1, "city": "Z\u00fcrich"}],
    ),
    Case(
        "gzip-bytes-named-csv",
        {"orders.csv": gzip.compress(b"id,amount\n1,10\n")},
        {"orders": {}},
        says=("orders.csv", "csv.encoding"),
    ),
    # --- decimal, thousands, date and timestamp formats ---------------------------------------
    Case(
        "decimal-comma-on-dot-decimals",
        {"orders.csv": "id,amount\n1,10.5\n2,20.25\n"},
        {"orders": {"csv": {"decimal_comma": True}}},
        says=("orders.csv", "column amount", "decimal_comma", "'10.5'", "remove csv.decimal_comma"),
    ),
    Case(
        "decimal-comma-from-the-source-on-a-dot-table",
        {"orders.csv": "id;amount\n1;10.5\n"},
        {"orders": {}},
        source={"csv": {"delimiter": ";", "decimal_comma": True}},
        says=("orders.csv", "column amount", "decimal_comma"),
    ),
    Case(
        "decimal-comma-on-comma-decimals-lands",
        {"orders.csv": "id;amount\n1;10,5\n"},
        {"orders": {"csv": {"delimiter": ";", "decimal_comma": True}}},
        outcome="lands",
        rows=[{"id": 1, "amount": 10.5}],
    ),
    Case(
        "thousands-dot-without-decimal-comma",
        {"orders.csv": "id;amount\n1;1.234\n2;12.500\n"},
        {"orders": {"csv": {"delimiter": ";", "thousands": "."}}},
        outcome="config",
        says=("thousands '.' is also the decimal point", "set decimal_comma: true"),
    ),
    Case(
        "thousands-separated-integers-land",
        {"orders.csv": "id;amount\n1;1.234\n2;12.500,5\n"},
        {"orders": {"csv": {"delimiter": ";", "thousands": ".", "decimal_comma": True}}},
        outcome="lands",
        rows=[{"id": 1, "amount": 1234.0}, {"id": 2, "amount": 12500.5}],
    ),
    Case(
        "decimal-comma-on-dot-thousands-asks-for-thousands",
        {"orders.csv": "id;amount\n1;1.234,5\n2;2.5\n"},
        {"orders": {"csv": {"delimiter": ";", "decimal_comma": True}}},
        says=("orders.csv", "column amount", "'1.234,5'", "decimal_comma: true", "csv.thousands"),
    ),
    Case(
        "date-format-that-does-not-match-iso-dates",
        {"orders.csv": "id,day\n1,2024-01-31\n2,2024-02-29\n"},
        {"orders": {"csv": {"date_format": "%d/%m/%Y"}}},
        says=("orders.csv", "column day", "date_format '%d/%m/%Y'", "'2024-01-31'"),
    ),
    Case(
        "date-format-that-does-not-match-dotted-dates",
        {"orders.csv": "id,day\n1,31.01.2024\n2,29.02.2024\n"},
        {"orders": {"csv": {"date_format": "%Y-%m-%d"}}},
        says=("orders.csv", "column day", "date_format '%Y-%m-%d'", "'31.01.2024'"),
    ),
    Case(
        "timestamp-format-that-does-not-match",
        {"orders.csv": "id,at\n1,2024-01-31 10:00:00\n2,2024-02-01 11:30:00\n"},
        {"orders": {"csv": {"timestamp_format": "%d/%m/%Y %H:%M"}}},
        says=("orders.csv", "column at", "timestamp_format '%d/%m/%Y %H:%M'"),
    ),
    Case(
        "a-matching-date-format-lands",
        {"orders.csv": "id,day\n1,31/01/2024\n"},
        {"orders": {"csv": {"date_format": "%d/%m/%Y"}}},
        outcome="lands",
        rows=[{"id": 1, "day": dt.date(2024, 1, 31)}],
    ),
    Case(
        "a-date-format-with-a-text-column-declared-lands",
        {"orders.csv": "id,day,ref\n1,31/01/2024,2024-01-31\n"},
        {"orders": {"csv": {"date_format": "%d/%m/%Y"}, "types": {"ref": "VARCHAR"}}},
        outcome="lands",
        rows=[{"id": 1, "day": dt.date(2024, 1, 31), "ref": "2024-01-31"}],
    ),
    Case(
        "ambiguous-dates-without-a-format",
        {"orders.csv": "id,day\n1,02/06/2024\n2,03/07/2024\n"},
        {"orders": {}},
        says=("orders.csv", "column day", "csv.date_format"),
    ),
    Case(
        "thousands-separator-that-does-not-match",
        {"orders.csv": "id;amount\n1;1 234,50\n"},
        {"orders": {"csv": {"delimiter": ";", "decimal_comma": True, "thousands": "."}}},
        says=("orders.csv", "column amount", "'1 234,50'", "thousands: '.'", "csv.thousands"),
    ),
    # --- headers and empty files ---------------------------------------------------------------
    Case(
        "empty-file",
        {"orders.csv": ""},
        {"orders": {}},
        says=("orders.csv, line 1", "empty file"),
    ),
    Case(
        "blank-lines-only",
        {"orders.csv": "\n\n  \n"},
        {"orders": {}},
        says=("orders.csv, line 1", "empty file"),
    ),
    Case(
        "header-only-file-lands-an-empty-part",
        {"orders.csv": "id,amount\n"},
        {"orders": {}},
        outcome="lands",
        rows=[],
    ),
    Case(
        "duplicate-header-names",
        {"orders.csv": "id,id\n1,2\n"},
        {"orders": {}},
        says=("orders.csv, line 1", "duplicate column names", "['id', 'id']"),
    ),
    Case(
        "empty-header-name",
        {"orders.csv": "id,,amount\n1,2,3\n"},
        {"orders": {}},
        says=("orders.csv, line 1", "empty or duplicate"),
    ),
    Case(
        "reserved-column-name",
        {"orders.csv": "id,_partition_id\n1,x\n"},
        {"orders": {}},
        says=("orders.csv", "_partition_id", "reserved", "rename it"),
    ),
    # --- declared types ------------------------------------------------------------------------
    Case(
        "declared-type-for-a-column-not-in-the-file",
        {"orders.csv": ORDERS},
        {"orders": {"types": {"amout": "DOUBLE"}}},
        says=("orders.csv", "types names columns not in the header", "amout", "id, amount"),
    ),
    Case(
        "declared-type-a-value-does-not-fit",
        {"orders.csv": "id,amount\n1,10\n2,n/a\n"},
        {"orders": {"types": {"amount": "INTEGER"}}},
        says=("orders.csv, line 3", "n/a"),
    ),
    Case(
        "declared-type-for-a-parquet-column-not-there",
        {"orders.parquet": parquet(pa.table({"id": [1]}))},
        {"orders": {"types": {"amount": "DOUBLE"}}},
        says=("orders.parquet", "types names columns not in the file", "amount"),
    ),
    Case(
        "declared-type-a-workbook-value-does-not-fit",
        {"orders.xlsx": workbook({"S": [["id", "code"], [1, "x"]]})},
        {"orders": {"types": {"code": "INTEGER"}}},
        says=("orders.xlsx", "declared types do not fit"),
    ),
    # --- type changes against the table's history ---------------------------------------------
    Case(
        "text-in-an-integer-column-names-the-line",
        {"orders_2.csv": "id,amount\n3,30\nA1001,40\n5,50\n"},
        {"orders": {}},
        before={"orders_1.csv": "id,amount\n1,10\n2,20\n"},
        says=(
            "orders_2.csv, line 3",
            "column id",
            "'A1001' is not a BIGINT",
            "on_bad_rows: quarantine",
            "types: {id: BIGINT}",
            "sources.erp.tables.orders",
            "text for good",
        ),
    ),
    Case(
        "text-in-a-date-column-names-the-line",
        {"orders_2.csv": "id,day\n3,2024-01-03\n4,soon\n"},
        {"orders": {}},
        before={"orders_1.csv": "id,day\n1,2024-01-01\n"},
        says=("orders_2.csv, line 3", "column day", "'soon' is not a DATE"),
    ),
    Case(
        "quarantine-with-the-raw-type-keeps-raw-typed",
        {"orders_2.csv": "id,amount\n3,30\nA1001,40\n" + "".join(f"{i},1\n" for i in range(200))},
        {"orders": {"types": {"id": "BIGINT"}, "on_bad_rows": "quarantine"}},
        before={"orders_1.csv": "id,amount\n1,10\n"},
        outcome="lands",
        rows=[{"id": 3, "amount": 30}] + [{"id": i, "amount": 1} for i in range(200)],
    ),
    Case(
        "a-date-where-the-table-has-numbers",
        {"orders_2.json": json.dumps([{"id": 2, "amount": "2024-01-01"}])},
        {"orders": {"format": "json", "pattern": "orders_*.json"}},
        before={"orders_1.json": json.dumps([{"id": 1, "amount": 10}])},
        says=("orders_2.json", "column amount", "the table has BIGINT"),
    ),
    Case(
        "new-column-with-on-schema-change-fail",
        {"orders_2.csv": "id,amount,note\n2,20,x\n"},
        {"orders": {"on_schema_change": "fail"}},
        before={"orders_1.csv": "id,amount\n1,10\n"},
        says=("orders_2.csv", "new columns note", "on_schema_change: fail"),
    ),
    Case(
        "missing-column",
        {"orders_2.csv": "id\n2\n"},
        {"orders": {}},
        before={"orders_1.csv": "id,amount\n1,10\n"},
        says=("orders_2.csv", "columns missing from the file: amount", "on_schema_change: allow"),
    ),
    # --- patterns: one file, one table ---------------------------------------------------------
    Case(
        "a-file-matching-two-patterns",
        {"orders_2024.csv": ORDERS},
        {"orders": {"pattern": "orders_*.csv"}, "everything": {"pattern": "*.csv"}},
        says=("orders_2024.csv", "matches tables orders, everything", "narrow the patterns"),
    ),
    Case(
        "a-file-matching-two-patterns-seen-from-the-other-table",
        {"orders_2024.csv": ORDERS},
        {"orders": {"pattern": "orders_*.csv"}, "everything": {"pattern": "*.csv"}},
        table="everything",
        says=("orders_2024.csv", "matches tables everything, orders", "pattern 'orders_*.csv'"),
    ),
    Case(
        "a-file-named-after-one-table-and-matching-another-pattern",
        {"orders.csv": ORDERS},
        {"orders": {}, "everything": {"pattern": "*.csv"}},
        says=("orders.csv", "orders: its name", "everything: pattern '*.csv'"),
    ),
    Case(
        "two-tables-with-the-same-pattern",
        {"orders.csv": ORDERS},
        {"orders": {"pattern": "*.csv"}, "backup": {"pattern": "*.csv"}},
        outcome="config",
        says=("tables orders and backup have the same pattern '*.csv'",),
    ),
    Case(
        "two-sheets-of-one-workbook-feed-two-tables",
        {"book.xlsx": workbook({"A": [["id"], [1]], "B": [["code"], ["x"]]})},
        {"orders": {"pattern": "book.xlsx", "sheet": "A"}, "codes": {"pattern": "book.xlsx"}},
        outcome="lands",
        rows=[{"id": 1}],
    ),
    # --- other formats -------------------------------------------------------------------------
    Case(
        "broken-json-line",
        {"orders.jsonl": '{"id": 1}\n{"id": oops}\n{"id": 3}\n'},
        {"orders": {}},
        says=("orders.jsonl, line 2", "in line 2"),
    ),
    Case(
        "missing-sheet",
        {"orders.xlsx": workbook({"Data": [["id"], [1]]})},
        {"orders": {"sheet": "Orders"}},
        says=("orders.xlsx", "Orders", "Data"),
    ),
    Case(
        "not-a-parquet-file",
        {"orders.parquet": "id,amount\n1,2\n"},
        {"orders": {}},
        says=("orders.parquet",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_file_is_refused_by_name_and_lands_nothing(case: Case, lake: Lake, inbox: Path):
    for name, content in case.before.items():
        drop(inbox, name, content)
    if case.before:
        first = land(lake, inbox, case, "r0")
        assert first.manifest is not None and not first.rejected, first.rejected
    landed_before = partitions(lake, case.table)
    for name, content in case.files.items():
        drop(inbox, name, content)

    if case.outcome == "config":
        with pytest.raises(ValidationError) as refused:
            land(lake, inbox, case, "r1")
        message = str(refused.value)
        for part in case.says:
            assert part in message
        assert partitions(lake, case.table) == landed_before
        return

    result = land(lake, inbox, case, "r1")

    if case.outcome == "lands":
        assert result.rejected == []
        assert rows_of(lake, result) == case.rows
        return
    assert len(result.rejected) == 1, result.rejected
    reason = result.rejected[0].reason
    for part in case.says:
        assert part in reason, reason
    assert result.manifest is None
    assert partitions(lake, case.table) == landed_before  # no manifest, no part, no folder
    assert not list(Path(lake.path("raw")).rglob(".*.parquet*"))  # no hidden staged part


# --- database tables: keys and cursors that are not in the data ------------------------------

KEY_CASES = [
    ("primary-key-not-a-column", {"primary_key": ["nope"]}, ("primary_key column 'nope'",)),
    (
        "one-of-two-key-columns-missing",
        {"primary_key": ["id", "nope"]},
        ("primary_key column 'nope'", ".primary_key"),
    ),
    (
        "key-of-a-query-not-in-its-result",
        {"query": "select id, amount from invoices", "primary_key": ["customer"]},
        ("primary_key column 'customer'", "columns: id, amount"),
    ),
    (
        "key-in-another-case",
        {"primary_key": ["ID"]},
        ("primary_key column 'ID'",),
    ),
]


@pytest.mark.integration
@pytest.mark.parametrize("spec, says", [c[1:] for c in KEY_CASES], ids=[c[0] for c in KEY_CASES])
def test_a_key_that_is_not_in_the_data_fails_the_extract_and_lands_nothing(
    machine_pg: str, lake: Lake, spec: dict[str, Any], says: tuple[str, ...]
):
    postgres_execute(
        machine_pg,
        "create table invoices (id integer, customer text, amount numeric(10, 2))",
        "insert into invoices values (1, 'Ada', 1.50)",
    )
    config = SqlSourceConfig(kind="sql", url=machine_pg, tables={"invoices": spec})
    src = SqlSource("billing", config)

    with pytest.raises(TableConfigError) as failed:
        land_table(lake, "billing", src, "invoices", "r1", today=DAY)

    message = str(failed.value)
    for part in ("billing.invoices", "sources.billing.tables.invoices", "nothing was landed"):
        assert part in message
    for part in says:
        assert part in message
    assert "customer" in message  # the columns that exist
    assert lake.manifests("billing", "invoices") == []
    assert not Path(lake.path("raw", "billing", "invoices")).exists() or not any(
        Path(lake.path("raw", "billing", "invoices")).rglob("*.parquet")
    )


@pytest.mark.integration
def test_an_incremental_column_that_is_not_in_the_data_fails_naming_the_columns(
    machine_pg: str, lake: Lake
):
    postgres_execute(machine_pg, "create table invoices (id integer, amount integer)")
    tables = {"invoices": {"incremental": {"column": "updated"}}}
    src = SqlSource("billing", SqlSourceConfig(kind="sql", url=machine_pg, tables=tables))

    with pytest.raises(SqlSourceError, match=r"incremental column 'updated'.*columns: id, amount"):
        land_table(lake, "billing", src, "invoices", "r1", today=DAY)

    assert lake.manifests("billing", "invoices") == []


@pytest.mark.integration
def test_a_bad_key_on_mariadb_lands_nothing(lake: Lake, request: pytest.FixtureRequest):
    if not mariadb_available():
        pytest.skip("no MariaDB at 127.0.0.1:3306")
    from conftest import mariadb_execute

    url = request.getfixturevalue("mariadb")
    mariadb_execute(
        url, "create table orders (id int, total int)", "insert into orders values (1, 2)"
    )
    tables = {"orders": {"incremental": {"column": "id"}, "primary_key": ["order_id"]}}
    src = SqlSource("shop", SqlSourceConfig(kind="sql", url=url, tables=tables))

    with pytest.raises(TableConfigError, match=r"column 'order_id'.*columns: id, total"):
        land_table(lake, "shop", src, "orders", "r1", today=DAY)

    assert lake.manifests("shop", "orders") == []


# --- the same check for every source kind: rest and odbc ---------------------------------------

REST_KEY_CASES = [
    ("rest-primary-key-not-a-field", {"primary_key": ["customer_id"]}, "primary_key column"),
    (
        "rest-nested-key-not-flattened",
        {"primary_key": ["address.city"]},
        "primary_key column 'address.city'",
    ),
]


@pytest.mark.parametrize(
    "spec, says", [c[1:] for c in REST_KEY_CASES], ids=[c[0] for c in REST_KEY_CASES]
)
def test_a_rest_key_that_is_not_a_field_fails_the_extract_and_lands_nothing(
    lake: Lake, spec: dict[str, Any], says: str
):
    from rest_server import serve_api

    from millpond.ingest.sources.rest import RestSource
    from millpond.ingest.sources.rest.config import RestSourceConfig

    with serve_api() as (base, _):
        tables = {"customers": {"path": "/cursor", "record_path": "items", **spec}}
        config = RestSourceConfig.model_validate(
            {"kind": "rest", "base_url": base, "tables": tables}
        )
        with pytest.raises(TableConfigError) as failed:
            land_table(lake, "crm", RestSource("crm", config), "customers", "r1", today=DAY)

    message = str(failed.value)
    for part in (
        says,
        "crm.customers",
        "sources.crm.tables.customers.primary_key",
        "address__city",
    ):
        assert part in message
    assert lake.manifests("crm", "customers") == []


@pytest.mark.integration
def test_an_odbc_key_that_is_not_a_column_fails_the_extract_and_lands_nothing(
    machine_pg: str, lake: Lake
):
    from urllib.parse import urlsplit

    from conftest import require_server

    from millpond.ingest.sources.odbc import OdbcSource, OdbcSourceConfig

    ini = Path("/etc/odbcinst.ini")
    installed = ini.is_file() and "[PostgreSQL Unicode]" in ini.read_text()
    require_server(installed, "psqlODBC driver not installed")
    parts = urlsplit(machine_pg)
    if not parts.hostname:
        pytest.skip("psqlODBC is tested over TCP (the machine's PostgreSQL), not a socket")
    postgres_execute(machine_pg, "create table items (id integer, name text)")
    postgres_execute(machine_pg, "insert into items values (1, 'bolt')")
    connection = (
        f"Driver={{PostgreSQL Unicode}};Server={parts.hostname};Port={parts.port};"
        f"Database={parts.path.lstrip('/')};"
    )
    tables = {"items": {"incremental": {"column": "id"}, "primary_key": ["sku"]}}
    config = OdbcSourceConfig(
        kind="odbc", connection_string=connection, user="postgres", tables=tables
    )

    with pytest.raises(TableConfigError, match=r"'sku'.*columns: id, name"):
        land_table(lake, "erp", OdbcSource("erp", config), "items", "r1", today=DAY)

    assert lake.manifests("erp", "items") == []
