"""A run's lifecycle as a user sees it in the ledger: a run killed with SIGKILL mid-flow is
closed as `abandoned` by the next start (its running nodes too, its Prefect flow run crashed),
and a run that cannot start still leaves a closed, failed row."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from conftest import BIN, millpond
from psycopg.rows import dict_row

pytestmark = pytest.mark.e2e


def ledger(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def running_node(url: str) -> list[dict[str, Any]]:
    try:
        return ledger(url, "select * from millpond.node_runs where status = 'running'")
    except psycopg.errors.UndefinedTable:
        return []  # not migrated yet


def test_a_killed_run_is_closed_as_abandoned_by_the_next_start(
    project: Path, machine_pg: str, prefect_api: str
) -> None:
    env = {**os.environ, "MILLPOND_METADATA__URL": machine_pg}
    run = subprocess.Popen(
        [str(BIN / "millpond"), "run"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while not running_node(machine_pg) and time.monotonic() < deadline:
        assert run.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    [killed] = ledger(machine_pg, "select * from millpond.runs")
    assert killed["status"] == "running"  # nobody could close it
    assert killed["pid"] == run.pid and killed["host"] and killed["heartbeat_at"]
    assert killed["flow_run_id"]

    rerun = millpond(project, "run", env={"MILLPOND_METADATA__URL": machine_pg})
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"closed run {killed['run_id']} as abandoned" in rerun.stderr
    runs = {r["run_id"]: r for r in ledger(machine_pg, "select * from millpond.runs")}
    old = runs.pop(killed["run_id"])
    assert old["status"] == "abandoned" and old["finished_at"] is not None
    assert f"pid {run.pid}" in old["error"]
    assert [r["status"] for r in runs.values()] == ["success"]
    nodes = ledger(
        machine_pg,
        "select node_id, status, finished_at from millpond.node_runs where run_id = %s",
        killed["run_id"],
    )
    assert "running" not in {n["status"] for n in nodes}
    assert "abandoned" in {n["status"] for n in nodes}
    assert all(n["finished_at"] is not None for n in nodes)
    flow_run = httpx.get(f"{prefect_api}/flow_runs/{killed['flow_run_id']}", timeout=10).json()
    assert flow_run["state"]["type"] == "CRASHED"


def test_a_run_that_cannot_start_leaves_a_closed_failed_row(
    project: Path, machine_pg: str, prefect_api: str
) -> None:
    env = {
        "MILLPOND_METADATA__URL": machine_pg,
        "MILLPOND_DBT__PROJECT_DIR": str(project / "no-such-dbt-project"),
    }
    result = millpond(project, "run", env=env)
    assert result.returncode == 2
    assert "no dbt_project.yml" in result.stderr
    [run] = ledger(machine_pg, "select * from millpond.runs")
    assert run["status"] == "failed" and run["finished_at"] is not None
    assert "cannot start the run" in run["error"] and "no dbt_project.yml" in run["error"]
    assert run["trigger"] == "cli" and run["orchestrator"] == "prefect"
