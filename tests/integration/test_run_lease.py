"""Run leases in a real ledger: who is alive, who died, and what closing a dead run changes."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from millpond.core.config_loading import load_config
from millpond.metadata.db import migrate
from millpond.metadata.ledger import Ledger
from millpond.metadata.records import (
    LeaseClaimed,
    LeaseHeartbeat,
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from millpond.runtime.context import RunContext
from millpond.runtime.lifecycle import (
    PROCESS_EXPIRY_SECONDS,
    close_dead_runs,
    lease_gone,
    open_run,
    this_host,
)

pytestmark = pytest.mark.integration


def rows(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def ctx(machine_pg: str, tmp_path: Path) -> RunContext:
    migrate(machine_pg)
    (tmp_path / "millpond.yml").write_text(
        "project: lease\nstate_dir: state\nwarehouse: {target: duckdb}\n"
    )
    config = load_config(tmp_path / "millpond.yml", env={"MILLPOND_METADATA__URL": machine_pg})
    context = RunContext(config, "new-run")
    context.__dict__["ledger"] = Ledger(machine_pg, tmp_path / "buffer.jsonl")
    return context


def test_a_dead_process_and_a_silent_task_run_are_abandoned_the_live_ones_kept(
    ctx: RunContext, machine_pg: str
) -> None:
    ledger = ctx.ledger
    for run_id in ("dead", "alive", "old-airflow", "busy-airflow", "done"):
        ledger.write(RunStarted(run_id, "prefect", "cli", "duckdb"))
    ledger.write(LeaseClaimed("dead", this_host(), dead_pid()))
    ledger.write(NodeStarted("dead", "extract.erp.orders", "extract"))
    ledger.write(NodeStarted("dead", "extract.erp.nation", "extract"))
    ledger.write(NodeFinished("dead", "extract.erp.nation", 1, "success", 10))
    ledger.write(LeaseClaimed("alive", this_host(), 1))  # pid 1 always runs
    ledger.write(LeaseClaimed("old-airflow", this_host(), None))
    ledger.write(LeaseClaimed("busy-airflow", this_host(), None))
    ledger.write(LeaseClaimed("done", this_host(), dead_pid()))
    ledger.write(RunFinished("done", "success"))
    with psycopg.connect(machine_pg, autocommit=True) as conn:
        conn.execute(
            "update millpond.runs set heartbeat_at = now() - interval '2 hours' "
            "where run_id = 'old-airflow'"
        )

    closed = close_dead_runs(ctx)
    assert sorted(r["run_id"] for r in closed) == ["dead", "old-airflow"]
    status = {r["run_id"]: r for r in rows(machine_pg, "select * from millpond.runs")}
    assert {k: v["status"] for k, v in status.items()} == {
        "dead": "abandoned",
        "alive": "running",
        "old-airflow": "abandoned",
        "busy-airflow": "running",
        "done": "success",  # a closed run keeps its status
    }
    assert "its process (pid" in status["dead"]["error"]
    assert "no heartbeat since" in status["old-airflow"]["error"]
    nodes = rows(
        machine_pg,
        "select node_id, status, error, finished_at from millpond.node_runs order by node_id",
    )
    assert [(n["node_id"], n["status"]) for n in nodes] == [
        ("extract.erp.nation", "success"),
        ("extract.erp.orders", "abandoned"),
    ]
    assert nodes[1]["finished_at"] is not None and "abandoned" in nodes[1]["error"]
    # The heartbeat of a closed run changes nothing and tells its thread to stop.
    assert ledger.try_write(LeaseHeartbeat("dead")) is False
    assert ledger.try_write(LeaseHeartbeat("alive")) is True


def test_open_run_records_the_lease_of_this_process(ctx: RunContext, machine_pg: str) -> None:
    open_run(ctx, "cli")
    [run] = rows(machine_pg, "select * from millpond.runs where run_id = 'new-run'")
    assert (run["host"], run["pid"], run["status"]) == (this_host(), os.getpid(), "running")
    assert run["heartbeat_at"] is not None and run["trigger"] == "cli"


def test_lease_rules() -> None:
    now = datetime.now(UTC)
    fresh = {"host": "other-host", "pid": 123, "heartbeat_at": now}
    assert lease_gone(fresh, this_host(), now, 3600) is None  # another host's pid: unknowable
    stale = {**fresh, "heartbeat_at": now - timedelta(seconds=PROCESS_EXPIRY_SECONDS + 1)}
    assert "no heartbeat" in (lease_gone(stale, this_host(), now, 3600) or "")
    task = {"host": this_host(), "pid": None, "heartbeat_at": now - timedelta(minutes=30)}
    assert lease_gone(task, this_host(), now, 3600) is None  # within the node timeout
    assert lease_gone(task, this_host(), now, 600) is not None
    legacy = {"host": None, "pid": None, "heartbeat_at": None, "started_at": now}
    assert lease_gone(legacy, this_host(), now + timedelta(hours=2), 3600) is not None
