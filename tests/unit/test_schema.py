"""Raw tables widen losslessly when a later export's types differ, and refuse lossy loads."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from ingest.lake import Lake
from ingest.landing import land_table
from ingest.loading import LoadError, load_table
from ingest.schema import common_type
from millpond.config import FilesSourceConfig

SOURCE = FilesSourceConfig(kind="files", path="inbox", tables=["orders"])


def land_and_load(
    con: duckdb.DuckDBPyConnection, lake: Lake, inbox: Path, name: str, body: str
) -> None:
    (inbox / name).write_text(body)
    land_table(lake, "erp", SOURCE, inbox, "orders", f"run-{name}", today=dt.date(2024, 3, 1))
    load_table(con, lake, "raw", "erp", "orders")


@pytest.mark.parametrize(
    ("raw", "incoming", "expected"),
    [
        ("BIGINT", "DOUBLE", "DOUBLE"),
        ("DOUBLE", "BIGINT", "DOUBLE"),
        ("INTEGER", "BIGINT", "BIGINT"),
        ("DATE", "TIMESTAMP", "TIMESTAMP"),
        ("VARCHAR", "BIGINT", "VARCHAR"),
        ("BIGINT", "VARCHAR", None),
        ("DATE", "BIGINT", None),
        ("DECIMAL(15,2)", "DOUBLE", "DOUBLE"),
    ],
)
def test_common_type_is_lossless_or_none(raw: str, incoming: str, expected: str | None) -> None:
    assert common_type(raw, incoming) == expected


def test_decimals_after_integers_widen_the_column_instead_of_rounding(tmp_path, lake, inbox):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    land_and_load(con, lake, inbox, "orders_1.csv", "id,amount\n1,10\n2,20\n")
    land_and_load(con, lake, inbox, "orders_2.csv", "id,amount\n3,12.75\n4,0.4\n")

    amounts = con.execute("select amount from raw.erp__orders order by id").fetchall()
    assert amounts == [(10.0,), (20.0,), (12.75,), (0.4,)]


def test_a_new_column_is_added_and_older_rows_get_null(tmp_path, lake, inbox):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    land_and_load(con, lake, inbox, "orders_1.csv", "id,amount\n1,10\n")
    land_and_load(con, lake, inbox, "orders_2.csv", "id,amount,note\n2,20,late\n")

    rows = con.execute("select id, note from raw.erp__orders order by id").fetchall()
    assert rows == [(1, None), (2, "late")]


def test_text_in_a_numeric_column_fails_naming_column_and_types(tmp_path, lake, inbox):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    land_and_load(con, lake, inbox, "orders_1.csv", "id,amount\n1,10\n")
    with pytest.raises(
        LoadError, match=r"column id: the raw table has BIGINT, this partition has VARCHAR"
    ):
        land_and_load(con, lake, inbox, "orders_2.csv", "id,amount\nA-1,20\n")

    assert con.execute("select id, amount from raw.erp__orders").fetchall() == [(1, 10)]
    assert con.execute("describe raw.erp__orders").fetchall()[0][1] == "BIGINT"
