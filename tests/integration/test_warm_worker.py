"""The warm node worker (millpond.cli.warm) with real processes: `run-start` starts it,
`run-node` goes through it, `run-finish` stops it; no worker, a stale one or changed code
means the node runs inline, as before."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import BIN, REPO, millpond
from psycopg.rows import dict_row

from millpond.cli.warm.client import request
from millpond.cli.warm.wire import socket_path
from millpond.runtime.lifecycle import pid_alive

pytestmark = pytest.mark.integration


def rows(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def eventually(check: Callable[[], Any], seconds: float = 60.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s: {check}")


@pytest.fixture
def env(machine_pg: str) -> dict[str, str]:
    return {"MILLPOND_METADATA__URL": machine_pg}


@pytest.fixture
def sock(project: Path) -> Iterator[Path]:
    """The project's worker socket; whatever worker a test left is stopped afterwards."""
    path = socket_path(project / ".millpond")
    yield path
    request(path, {"op": "stop"})


def start(project: Path, run_id: str, env: dict[str, str]) -> int:
    """`millpond run-start`; the pid of the worker it says is ready."""
    result = millpond(project, "run-start", "--run-id", run_id, env=env)
    assert result.returncode == 0, result.stderr
    found = re.search(r"warm node worker: ready in [\d.]+ s \(pid (\d+)", result.stderr)
    assert found, result.stderr
    return int(found.group(1))


def served(project: Path, node_id: str) -> list[tuple[int, str]]:
    """(pid, exit) of every run-node of this node the worker's log says it served."""
    log = (project / ".millpond" / "run" / "node-worker.log").read_text()
    return re.findall(rf"run-node {re.escape(node_id)}: pid (\d+) exit (-?\d+)", log)


def run_log(project: Path, run_id: str) -> list[str]:
    path = project / ".millpond" / "logs" / f"{run_id}.jsonl"
    return [json.loads(line)["record"]["message"] for line in path.read_text().splitlines()]


def test_run_nodes_through_the_worker_record_what_inline_ones_do(
    project: Path, env: dict[str, str], machine_pg: str, sock: Path
) -> None:
    start(project, "w-1", env)
    extracted = millpond(project, "run-node", "extract.erp.region", "--run-id", "w-1", env=env)
    assert extracted.returncode == 0, extracted.stderr
    assert "extract.erp.region: success in" in extracted.stdout  # the child's own stdout
    assert "landed region.xlsx (5 rows)" in extracted.stderr  # and its logs
    loaded = millpond(
        project, "run-node", "load.erp.region", "--run-id", "w-1", "--attempt", "2", env=env
    )
    assert loaded.returncode == 0, loaded.stderr
    assert [code for _, code in served(project, "extract.erp.region")] == ["0"]
    assert [code for _, code in served(project, "load.erp.region")] == ["0"]
    # What tests/integration/test_run_node.py asserts of the same two nodes run inline.
    run = rows(machine_pg, "select * from millpond.runs where run_id = 'w-1'")[0]
    assert (run["status"], run["orchestrator"]) == ("running", "airflow")
    assert rows(
        machine_pg,
        "select node_id, attempt, status, rows from millpond.node_runs"
        " where run_id = 'w-1' order by node_id",
    ) == [
        {"node_id": "extract.erp.region", "attempt": 1, "status": "success", "rows": 5},
        {"node_id": "load.erp.region", "attempt": 2, "status": "success", "rows": 5},
    ]
    assert any("served by the warm node worker" in m for m in run_log(project, "w-1"))
    unknown = millpond(project, "run-node", "extract.erp.nope", "--run-id", "w-1", env=env)
    assert unknown.returncode == 2
    assert "unknown node 'extract.erp.nope'" in unknown.stdout + unknown.stderr


def test_a_failing_node_exits_1_with_its_error_on_stderr_as_inline(
    project: Path, env: dict[str, str], machine_pg: str, sock: Path
) -> None:
    customers = project / "inbox" / "erp" / "customer.csv"
    lines = customers.read_text().splitlines()
    lines[2] += ",an extra field"
    customers.write_text("\n".join(lines) + "\n")
    start(project, "w-2", env)
    millpond(project, "run-node", "extract.erp.customer", "--run-id", "w-2", env=env)
    served_run = millpond(project, "run-node", "load.erp.customer", "--run-id", "w-2", env=env)
    assert [code for _, code in served(project, "load.erp.customer")] == ["1"]
    finished = millpond(project, "run-finish", "--run-id", "w-2", env=env)  # stops the worker
    assert finished.returncode == 1
    inline = millpond(
        project, "run-node", "load.erp.customer", "--run-id", "w-2", "--attempt", "2", env=env
    )
    assert served(project, "load.erp.customer") == served(project, "load.erp.customer")[:1]
    for result in (served_run, inline):
        assert result.returncode == 1
        assert "customer.csv, line 3" in result.stderr
    errors = rows(
        machine_pg,
        "select attempt, status, error from millpond.node_runs"
        " where node_id = 'load.erp.customer' order by attempt",
    )
    assert [(e["attempt"], e["status"]) for e in errors] == [(1, "failed"), (2, "failed")]
    assert errors[0]["error"] == errors[1]["error"]


def test_a_stale_socket_is_removed_and_the_node_runs_inline(
    project: Path, env: dict[str, str], sock: Path
) -> None:
    sock.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(sock))  # closed without unlinking: nobody listens there any more
    result = millpond(project, "run-node", "extract.erp.region", "--run-id", "w-3", env=env)
    assert result.returncode == 0, result.stderr
    assert not sock.exists()
    assert any("stale socket" in m for m in run_log(project, "w-3"))


def test_sigterm_to_the_client_kills_the_child_it_runs_on(
    project: Path, env: dict[str, str], machine_pg: str, sock: Path
) -> None:
    start(project, "w-4", env)
    millpond(project, "run-node", "extract.erp.region", "--run-id", "w-4", env=env)
    # Holding the warehouse's writer lock keeps the load node waiting inside its run.
    with open(project / ".millpond" / "warehouse.duckdb.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = subprocess.Popen(
            [str(BIN / "millpond"), "run-node", "load.erp.region", "--run-id", "w-4"],
            cwd=project,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        log = project / ".millpond" / "run" / "node-worker.log"
        child = int(
            eventually(lambda: re.findall(r"run-node load.erp.region: pid (\d+)", log.read_text()))[
                0
            ]
        )
        eventually(
            lambda: rows(
                machine_pg,
                "select 1 from millpond.node_runs where node_id = 'load.erp.region'"
                " and status = 'running'",
            )
        )
        client.send_signal(signal.SIGTERM)
        assert client.wait(timeout=60) == 128 + signal.SIGTERM
        eventually(lambda: not pid_alive(child))
    assert served(project, "load.erp.region") == [(str(child), str(-signal.SIGTERM))]
    # As for a killed inline process: the run's close records the node failed.
    millpond(project, "run-finish", "--run-id", "w-4", env=env)
    node = rows(
        machine_pg,
        "select status, error from millpond.node_runs where node_id = 'load.erp.region'",
    )
    assert [n["status"] for n in node] == ["failed"]
    assert "killed" in node[0]["error"]


def test_the_worker_stops_on_run_finish_when_idle_and_when_its_code_changed(
    project: Path, env: dict[str, str], sock: Path
) -> None:
    idle = start(project, "w-5", {**env, "MILLPOND_AIRFLOW__WARM_WORKER_IDLE_SECONDS": "2"})
    eventually(lambda: not pid_alive(idle))
    assert not sock.exists()

    finished = start(project, "w-6", env)
    millpond(project, "run-finish", "--run-id", "w-6", env=env)
    eventually(lambda: not pid_alive(finished))
    assert not sock.exists()

    changed = start(project, "w-7", env)
    # As an edit or a reinstall would; put back at once, since every worker of this checkout
    # running meanwhile (another test's) stops too, and its tasks run inline.
    source = REPO / "millpond" / "cli" / "warm" / "wire.py"
    before = source.stat()
    os.utime(source)
    try:
        result = millpond(project, "run-node", "extract.erp.region", "--run-id", "w-7", env=env)
    finally:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert result.returncode == 0, result.stderr  # run inline
    assert served(project, "extract.erp.region") == []
    assert any("code or installed packages changed" in m for m in run_log(project, "w-7"))
    eventually(lambda: not pid_alive(changed))

    off = millpond(
        project, "run-start", "--run-id", "w-8", env={**env, "MILLPOND_AIRFLOW__WARM_WORKER": "0"}
    )
    assert "warm node worker: off" in off.stderr
    assert not sock.exists()
