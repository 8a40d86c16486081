"""Data tests on what readers get: the published marts agree with the inbox's exports.

Run after `just run` (`just test` runs `millpond check` first). They read the published
snapshot read-only, as a notebook or BI tool would, so they can run while a run builds."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

PROJECT = Path(__file__).resolve().parents[1]
SNAPSHOT = PROJECT / ".millpond" / "published" / "current"


@pytest.fixture
def marts() -> duckdb.DuckDBPyConnection:
    if not SNAPSHOT.exists():
        pytest.fail("nothing published yet: run `just run` first")
    connection = duckdb.connect(str(SNAPSHOT.resolve()), read_only=True)
    yield connection
    connection.close()


def test_daily_sales_add_up_to_the_exported_orders(marts: duckdb.DuckDBPyConnection) -> None:
    exported = Decimal(0)
    count = 0
    for path in (PROJECT / "inbox" / "shop").glob("orders*.csv"):
        with path.open(newline="") as rows:
            for row in csv.DictReader(rows):
                exported += Decimal(row["amount"])
                count += 1
    orders, revenue = marts.execute(
        "select sum(orders), sum(revenue) from marts.fct_daily_sales"
    ).fetchone()
    assert (orders, revenue) == (count, exported)
