"""The commands a data engineer reaches for, run as a user runs them (real Prefect server,
real dbt, real ledger): `run --select/--exclude/--full-refresh`, `status`, `logs`, `docs`,
and what the run prints (each warning once, node names whole, rows and duration as the API)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from conftest import BIN, REPO, free_port, millpond, write_project
from psycopg.rows import dict_row
from serve_helpers import api_for

pytestmark = pytest.mark.e2e

STRAY = "stray_export.txt"


def ledger_rows(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def run_id_of(stdout: str) -> str:
    match = re.search(r"run (\S+): (success|failed) in", stdout)
    assert match, stdout
    return match.group(1)


def nodes_run(url: str, run_id: str) -> set[str]:
    rows = ledger_rows(url, "select node_id from millpond.node_runs where run_id = %s", run_id)
    return {r["node_id"] for r in rows}


def test_select_status_logs_and_what_a_run_prints(
    project: Path, prefect_api: str, machine_pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"MILLPOND_METADATA__URL": machine_pg, "COLUMNS": "40"}  # stdout is a pipe here
    (project / "inbox" / "erp" / STRAY).write_text("not a table\n")

    # Only the selection and what it needs: region's extract and load, no other table.
    part = millpond(project, "run", "--select", "stg_erp__region", env=env)
    assert part.returncode == 0, part.stdout + part.stderr
    first = run_id_of(part.stdout)
    assert nodes_run(machine_pg, first) == {
        "extract.erp.region",
        "load.erp.region",
        "dbt.stg_erp__region",
    }
    assert "publish not selected" in part.stdout
    assert not (project / ".millpond" / "published" / "current").exists()

    # The whole graph: each warning once, every node id whole in the piped table, and the
    # summary's rows and duration are the API's.
    whole = millpond(project, "run", env=env)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    printed = whole.stdout + whole.stderr
    assert printed.count(f"{STRAY} matches no table") == 1, printed
    graph = millpond(project, "graph", "--json", env=env)
    ids = re.findall(r'"id": "([^"]+)"', graph.stdout)
    assert "dbt.agg_revenue_by_nation_year" in ids
    for node_id in ids:
        assert re.search(rf"│ {re.escape(node_id)} +│", whole.stdout), node_id
    run_id = run_id_of(whole.stdout)
    line = re.search(r"in ([\d.]+) s; \d+ nodes, ([\d,]+) raw rows loaded", whole.stdout)
    assert line, whole.stdout
    monkeypatch.setenv("MILLPOND_METADATA__URL", machine_pg)
    with api_for(project / "millpond.yml", monkeypatch) as api:
        served = api.get(f"/runs/{run_id}").json()
    assert served["summary"]["rows"] == int(line.group(2).replace(",", "")) > 0
    assert f"{served['duration_ms'] / 1000:.1f}" == line.group(1)
    landed = sum(n["rows"] for n in api_rows(machine_pg, run_id, "load"))
    assert served["summary"]["rows"] == landed

    # A failing node: status shows it, logs show its lines.
    bad = project / "inbox" / "erp" / "orders_2026-12-01.csv"
    header = (project / "inbox" / "erp" / "orders.csv").read_text().splitlines()[0]
    bad.write_text(header + "\n1|2|3\n")
    failed = millpond(project, "run", "--select", "load.erp.orders", env=env)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    failed_id = run_id_of(failed.stdout)
    assert nodes_run(machine_pg, failed_id) == {"extract.erp.orders", "load.erp.orders"}

    status = millpond(project, "status", env=env)
    assert status.returncode == 0, status.stderr
    row = next(x for x in status.stdout.splitlines() if failed_id in x)
    # The malformed file is rejected at landing; the table's load fails naming it.
    assert "failed" in row and "load.erp.orders" in row
    assert run_id in status.stdout and first in status.stdout
    one = millpond(project, "status", failed_id, env=env)
    assert one.returncode == 0, one.stderr
    assert "orders_2026-12-01.csv" in one.stdout and "failed" in one.stdout
    assert millpond(project, "status", "no-such-run", env=env).returncode == 2

    logs = millpond(project, "logs", failed_id, "load.erp.orders", env=env)
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert lines and all(" load.erp.orders " in x for x in lines)
    assert any("ERROR" in x and "orders_2026-12-01.csv" in x for x in lines)
    unknown_node = millpond(project, "logs", failed_id, "extract.erp.ordrs", env=env)
    assert unknown_node.returncode == 2
    assert "did you mean 'extract.erp.orders'" in unknown_node.stderr
    unknown_run = millpond(project, "logs", "20990101T000000Z-000000", env=env)
    assert unknown_run.returncode == 2 and "no log of run" in unknown_run.stderr


def api_rows(url: str, run_id: str, kind: str) -> list[dict[str, Any]]:
    return ledger_rows(
        url,
        "select rows from millpond.node_runs"
        " where run_id = %s and kind = %s and status = 'success'",
        run_id,
        kind,
    )


AUDIT_MODEL = """{{ config(materialized='incremental', tags=['audit']) }}
-- one row per build: an incremental build adds one, a full refresh starts again
select '{{ invocation_id }}' as invocation_id
"""


def test_full_refresh_rebuilds_an_incremental_model_and_docs_are_generated(
    tmp_path: Path, prefect_api: str, machine_pg: str
) -> None:
    dbt_project = tmp_path / "transform"
    shutil.copytree(
        REPO / "transform", dbt_project, ignore=shutil.ignore_patterns("target", "logs")
    )
    (dbt_project / "models" / "audit_builds.sql").write_text(AUDIT_MODEL)
    project = write_project(tmp_path / "project", None, dbt_project)
    (project / "inbox" / "erp").mkdir(parents=True)
    env = {"MILLPOND_METADATA__URL": machine_pg}

    preview = millpond(project, "graph", "--select", "tag:audit", env=env)
    assert preview.returncode == 0, preview.stderr
    assert [x.split()[0] for x in preview.stdout.splitlines()] == ["dbt.audit_builds"]

    def rows_after(*args: str) -> int:
        result = millpond(project, "run", "--select", "tag:audit", *args, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        rows = ledger_rows(
            machine_pg,
            "select node_id, rows from millpond.node_runs where run_id = %s",
            run_id_of(result.stdout),
        )
        assert [r["node_id"] for r in rows] == ["dbt.audit_builds"]
        return rows[0]["rows"]

    assert rows_after() == 1
    assert rows_after() == 2  # incremental: one more row
    assert rows_after("--full-refresh") == 1  # rebuilt from scratch

    docs = millpond(project, "docs", "--no-serve", env=env)
    assert docs.returncode == 0, docs.stdout + docs.stderr
    site = project / ".millpond" / "docs"
    assert (site / "index.html").stat().st_size > 10_000
    catalog = (site / "catalog.json").read_text()
    assert "model.millpond.audit_builds" in catalog
    # The lineage dbt draws: from the source table through staging to the marts.
    children = json.loads((site / "manifest.json").read_text())["child_map"]
    assert "model.millpond.stg_erp__orders" in children["source.millpond.erp.orders"]
    assert "model.millpond.fct_orders" in children["model.millpond.stg_erp__orders"]

    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "millpond"), "docs", "--port", str(port)],
        cwd=project,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        page = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and server.poll() is None:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/index.html", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert page is not None and page.status_code == 200, server.poll()
        assert httpx.get(f"http://127.0.0.1:{port}/catalog.json").json()["nodes"]
    finally:
        server.terminate()
        server.wait(timeout=30)
