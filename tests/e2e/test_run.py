"""`millpond run` end to end, as a user runs it: real Prefect server, real dbt, real ledger.

Scale 0.01 keeps each run to seconds; the assertions are about what a user sees: exit codes,
the published marts, what the ledger says, what the raw layer holds. The tests that start
after a green run share one (conftest's `after_a_green_run`, restored before each); the
ledger on the machine's PostgreSQL is checked on the session's reference run.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psycopg
import pytest
from conftest import REPO, Green, ReferenceRun, millpond
from pg_helpers import refusing
from psycopg.rows import dict_row

from millpond.metadata.buffer import buffer_path
from millpond.metadata.db import resolve_url

pytestmark = pytest.mark.e2e

RAW_TABLES = ["customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"]


def ledger_rows(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def raw_counts(project: Path) -> dict[str, int]:
    with duckdb.connect(str(project / ".millpond" / "warehouse.duckdb"), read_only=True) as con:
        return {
            t: con.execute(f"select count(*) from raw.erp__{t}").fetchone()[0] for t in RAW_TABLES
        }


def latest_run(url: str) -> dict[str, Any]:
    return ledger_rows(url, "select * from millpond.runs order by started_at desc limit 1")[0]


def graph_nodes(project: Path) -> list[str]:
    result = millpond(project, "graph", "--json")
    assert result.returncode == 0, result.stderr
    return [n["id"] for n in json.loads(result.stdout)["nodes"]]


def q1_from_files(lineitem_csv: Path) -> list[tuple[Any, ...]]:
    """TPC-H Q1, computed by DuckDB straight from the export file."""
    return duckdb.sql(
        f"""
        with l as (
            select l_returnflag, l_linestatus, l_quantity::decimal(15,2) as qty,
                   l_extendedprice::decimal(15,2) as price, l_discount::decimal(15,2) as disc,
                   l_tax::decimal(15,2) as tax
            from read_csv('{lineitem_csv}')
            where l_shipdate <= date '1998-12-01' - interval 90 day
        )
        select l_returnflag, l_linestatus, sum(qty), sum(price), sum(price * (1 - disc)),
               sum(price * (1 - disc) * (1 + tax)), avg(qty), avg(price), avg(disc), count(*)
        from l group by all order by 1, 2
        """
    ).fetchall()


def published(project: Path, sql: str) -> list[tuple[Any, ...]]:
    current = project / ".millpond" / "published" / "current"
    with duckdb.connect(str(current), read_only=True) as con:
        return con.execute(sql).fetchall()


def run_notebook(path: Path) -> dict[str, Any]:
    """Execute a notebook's code cells in order (cell-final expressions are bound, so a wrong
    table or column fails here as it would in Jupyter)."""
    namespace: dict[str, Any] = {}
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            exec("".join(cell["source"]), namespace)
    return namespace


def test_first_run_publishes_q1_and_ledgers_every_node(
    project: Path, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = millpond(project, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "success" in result.stdout and "published snapshot" in result.stdout
    assert "Prefect UI: http://127.0.0.1" in result.stdout

    q1 = published(
        project,
        "select return_flag, line_status, sum_qty, sum_base_price, sum_disc_price, sum_charge,"
        " avg_qty, avg_price, avg_disc, count_order"
        " from aggregates.agg_pricing_summary order by 1, 2",
    )
    expected = q1_from_files(project / "inbox" / "erp" / "lineitem.csv")
    assert len(q1) == len(expected) == 4
    for got, want in zip(q1, expected, strict=True):
        assert got[:2] == want[:2]
        assert [round(float(v), 2) for v in got[2:6]] == [round(float(v), 2) for v in want[2:6]]
        assert [round(float(v), 6) for v in got[6:9]] == [round(float(v), 6) for v in want[6:9]]
        assert got[9] == want[9]

    url = resolve_url("embedded", project / ".millpond")
    run = latest_run(url)
    assert run["status"] == "success" and run["flow_run_id"]
    nodes = ledger_rows(url, "select * from millpond.node_runs where run_id = %s", run["run_id"])
    assert {n["node_id"] for n in nodes} == set(graph_nodes(project))
    assert all(n["status"] == "success" and n["duration_ms"] is not None for n in nodes)

    counts = ledger_rows(url, "select * from millpond.row_counts where run_id = %s", run["run_id"])
    recorded = {c["relation"]: c["rows"] for c in counts}
    assert len(recorded) >= 8 + 16
    with duckdb.connect(str(project / ".millpond" / "warehouse.duckdb"), read_only=True) as con:
        for relation, rows in recorded.items():
            assert con.execute(f"select count(*) from {relation}").fetchone()[0] == rows, relation
    tests = ledger_rows(url, "select * from millpond.test_results where run_id = %s", run["run_id"])
    assert len(tests) > 100 and all(t["status"] == "pass" for t in tests)

    # The run is visible in the Prefect UI: one completed task run per node, node logs attached.
    flow_run = {"flow_runs": {"id": {"any_": [run["flow_run_id"]]}}}
    task_runs = httpx.post(f"{prefect_api}/task_runs/filter", json=flow_run).json()
    assert sorted(t["name"] for t in task_runs) == sorted(graph_nodes(project))
    assert {t["state_type"] for t in task_runs} == {"COMPLETED"}
    logs = httpx.post(
        f"{prefect_api}/logs/filter", json={"logs": {"flow_run_id": {"any_": [run["flow_run_id"]]}}}
    ).json()
    assert any("registered erp/lineitem" in log["message"] for log in logs)

    # The notebook reads the published snapshot, read-only.
    monkeypatch.chdir(project)
    notebook = run_notebook(REPO / "notebooks" / "explore.ipynb")
    assert notebook["con"].sql(
        "select count(*) from aggregates.agg_pricing_summary"
    ).fetchone() == (4,)
    notebook["con"].close()

    # A second run with no new files lands and loads nothing.
    before = raw_counts(project)
    again = millpond(project, "run")
    assert again.returncode == 0, again.stdout + again.stderr
    assert raw_counts(project) == before
    second = latest_run(url)["run_id"]
    landed = ledger_rows(
        url,
        "select node_id, rows from millpond.node_runs"
        " where run_id = %s and node_id ~ '^(extract|load)'",
        second,
    )
    assert len(landed) == 16 and all(r["rows"] == 0 for r in landed)

    # One new export file: only it is landed and loaded.
    new_orders = project / "inbox" / "erp" / "orders_2026-11-26.csv"
    with (project / "inbox" / "erp" / "orders.csv").open() as src, new_orders.open("w") as dst:
        reader, writer = csv.reader(src), csv.writer(dst)
        writer.writerow(next(reader))
        for i, row in zip(range(3), reader, strict=False):
            writer.writerow([str(10_000_000 + i), *row[1:]])
    third = millpond(project, "run")
    assert third.returncode == 0, third.stdout + third.stderr
    after = raw_counts(project)
    assert after == {**before, "orders": before["orders"] + 3}
    run_id = latest_run(url)["run_id"]
    moved = ledger_rows(
        url,
        "select node_id, rows from millpond.node_runs where run_id = %s and rows > 0"
        " and node_id ~ '^(extract|load)' order by node_id",
        run_id,
    )
    assert moved == [
        {"node_id": "extract.erp.orders", "rows": 3},
        {"node_id": "load.erp.orders", "rows": 3},
    ]


def test_ledger_on_machine_postgres(reference_run: ReferenceRun) -> None:
    # The session's reference run is a plain `millpond run` with MILLPOND_METADATA__URL set
    # to a database on the machine's PostgreSQL (conftest.reference_run).
    project, url = reference_run.project, reference_run.ledger_url
    run = latest_run(url)
    assert run["status"] == "success" and run["orchestrator"] == "prefect"
    status = ledger_rows(url, "select * from millpond.job_status")
    assert {s["node_id"] for s in status} == set(graph_nodes(project))
    partitions = ledger_rows(url, "select * from millpond.partitions")
    assert len(partitions) == 8 and all(p["loaded_at"] is not None for p in partitions)
    assert not (project / ".millpond" / "pg").exists()  # no embedded server was needed


def test_failing_dbt_test_fails_run_and_keeps_published_snapshot(
    after_a_green_run: Green, tmp_path: Path
) -> None:
    project, url = after_a_green_run.project, after_a_green_run.url
    current = project / ".millpond" / "published" / "current"
    good_snapshot = current.resolve()

    broken = tmp_path / "transform_with_failing_test"
    shutil.copytree(REPO / "transform", broken, ignore=shutil.ignore_patterns("target", "logs"))
    (broken / "tests" / "assert_no_urgent_orders.sql").write_text(
        "-- deliberately fails: the demo data has urgent orders\n"
        "select * from {{ ref('fct_orders') }} where order_priority = '1-URGENT'\n"
    )
    result = millpond(
        project, "run", env={**after_a_green_run.env, "MILLPOND_DBT__PROJECT_DIR": str(broken)}
    )
    assert result.returncode == 1
    assert "assert_no_urgent_orders" in result.stdout
    assert "nothing published" in result.stdout
    assert current.resolve() == good_snapshot

    run = latest_run(url)
    assert run["status"] == "failed"
    failed = ledger_rows(
        url,
        "select * from millpond.test_results where run_id = %s and status <> 'pass'",
        run["run_id"],
    )
    assert [(t["test"], t["status"], t["node_id"]) for t in failed] == [
        ("assert_no_urgent_orders", "fail", "dbt.fct_orders")
    ]
    assert failed[0]["failures"] > 0
    nodes = {
        r["node_id"]: r["status"]
        for r in ledger_rows(
            url, "select * from millpond.node_runs where run_id = %s", run["run_id"]
        )
    }
    assert nodes["dbt.fct_orders"] == "failed"
    assert nodes["publish"] == "skipped"
    assert nodes["dbt.agg_monthly_revenue"] == "skipped"  # downstream of fct_orders
    # The independent branch was settled, not skipped: nothing it reads changed since the
    # published run, so it is `unchanged` (not rebuilt) rather than built again.
    assert nodes["dbt.agg_pricing_summary"] == "unchanged"


def test_malformed_csv_fails_run_naming_file_and_line(after_a_green_run: Green) -> None:
    project = after_a_green_run.project
    before = raw_counts(project)
    bad = project / "inbox" / "erp" / "orders_2026-11-27.csv"
    lines = (project / "inbox" / "erp" / "orders.csv").read_text().splitlines()[:6]
    lines[4] += ",an extra field"
    bad.write_text("\n".join(lines) + "\n")

    result = millpond(project, "run", env=after_a_green_run.env)
    assert result.returncode == 1
    assert "orders_2026-11-27.csv, line 5" in result.stdout
    assert raw_counts(project) == before
    lake = project / ".millpond" / "lake" / "raw" / "erp" / "orders"
    assert len(list(lake.rglob("_manifest.json"))) == 1  # the broken file never became a partition


def test_a_file_with_a_changed_type_is_rejected_and_the_good_files_still_load(
    after_a_green_run: Green,
) -> None:
    project, machine_pg, env = (
        after_a_green_run.project,
        after_a_green_run.url,
        after_a_green_run.env,
    )
    before = raw_counts(project)
    inbox = project / "inbox" / "erp"
    header, *rows = (inbox / "orders.csv").read_text().splitlines()[:4]
    bad = [f"A{row}" if i == 1 else row for i, row in enumerate(rows)]  # o_orderkey A2,...
    (inbox / "orders_2026-11-27.csv").write_text("\n".join([header, *bad]) + "\n")
    good = [f"{9_000_000 + i}," + row.split(",", 1)[1] for i, row in enumerate(rows)]
    (inbox / "orders_2026-11-28.csv").write_text("\n".join([header, *good]) + "\n")

    result = millpond(project, "run", env=env)

    assert result.returncode == 1
    shown = " ".join(result.stdout.split())
    assert "orders_2026-11-27.csv, line 3: column o_orderkey is VARCHAR" in shown  # A2 is there
    after = raw_counts(project)
    assert after["orders"] == before["orders"] + 3  # the good file landed and loaded
    rejected = ledger_rows(machine_pg, "select * from millpond.rejected_files")
    assert [(r["file"], r["outcome"], r["table_name"]) for r in rejected] == [
        ("orders_2026-11-27.csv", "rejected", "orders")
    ]
    assert "BIGINT" in rejected[0]["reason"]

    (inbox / "orders_2026-11-27.csv").unlink()  # the user takes the bad export back
    again = millpond(project, "run", env=env)

    assert again.returncode == 0, again.stdout + again.stderr  # nothing left that blocks
    assert raw_counts(project)["orders"] == before["orders"] + 3


def test_run_completes_when_the_ledger_is_down_and_flushes_later(
    project: Path, prefect_api: str, machine_pg: str
) -> None:
    env = {"MILLPOND_METADATA__URL": machine_pg}
    with refusing(machine_pg):  # the ledger is down for the whole first run
        result = millpond(project, "run", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ledger records buffered" in result.stdout
    assert (project / ".millpond" / "published" / "current").exists()
    buffer = buffer_path(project / ".millpond", machine_pg)  # this ledger's own buffer
    assert buffer.stat().st_size > 0

    # The next run, with the database back, flushes the first run's records before its own.
    again = millpond(project, "run", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    runs = ledger_rows(machine_pg, "select run_id, status from millpond.runs order by started_at")
    assert [r["status"] for r in runs] == ["success", "success"]
    first = runs[0]["run_id"]
    nodes = ledger_rows(machine_pg, "select * from millpond.node_runs where run_id = %s", first)
    assert {n["node_id"] for n in nodes} == set(graph_nodes(project))
    assert not buffer.exists() or buffer.stat().st_size == 0
