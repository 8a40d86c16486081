"""Runs are in a real ledger from the moment they are asked for: queued, then running or
closed failed with the reason, and told to a real webhook receiver with the ledger's rows and
duration."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import millpond
from psycopg.rows import dict_row
from webhook_receiver import Receiver

from millpond.core.config_loading import load_config
from millpond.metadata import queries
from millpond.metadata.db import connect, migrate
from millpond.metadata.ledger import Ledger
from millpond.metadata.records import LeaseClaimed, RunFinished, RunQueued, RunStarted
from millpond.runtime.context import RunContext
from millpond.runtime.execute import NodeOutcome
from millpond.runtime.lifecycle import close_dead_runs, close_run, this_host
from millpond.runtime.unstartable import ConfigUnreadable, load_or_record

pytestmark = pytest.mark.integration


def run_row(url: str, run_id: str) -> dict[str, Any]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        row = conn.execute("select * from millpond.runs where run_id = %s", (run_id,)).fetchone()
    assert row is not None, f"{run_id} is not in the ledger"
    return dict(row)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def new_run_id() -> str:
    from millpond.core.runid import new_run_id as make

    return make()


def wait_closed(api: Any, run_id: str, seconds: float = 180) -> dict[str, Any]:
    """The run once it is no longer queued or running (polled; its process must start)."""
    deadline = time.monotonic() + seconds
    while True:
        run = api.get(f"/runs/{run_id}").json()
        if run["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return run
        time.sleep(0.5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def stack(machine_pg: str, tmp_path: Path, receiver: Receiver) -> Path:
    """A project whose ledger is a fresh database and whose webhook is the receiver."""
    migrate(machine_pg)
    (tmp_path / "millpond.yml").write_text(
        f"project: queued\nstate_dir: state\nmetadata: {{url: '{machine_pg}'}}\n"
        f"notify:\n  - {{on: [success, failure], webhook: '{receiver.url}', format: json}}\n"
    )
    return tmp_path / "millpond.yml"


def test_a_queued_run_opens_as_running_and_keeps_when_it_was_asked_for(
    machine_pg: str, tmp_path: Path
) -> None:
    migrate(machine_pg)
    ledger, run_id = Ledger(machine_pg, tmp_path / "buffer.jsonl"), new_run_id()
    ledger.write(RunQueued(run_id, "prefect", "api", "duckdb", "flow-1"))
    queued = run_row(machine_pg, run_id)
    assert (queued["status"], queued["trigger"], queued["flow_run_id"]) == (
        "queued",
        "api",
        "flow-1",
    )
    assert queued["queued_at"] == queued["started_at"]
    ledger.write(
        RunQueued(run_id, "prefect", "schedule", "postgres")
    )  # asked again: nothing changes
    ledger.write(RunStarted(run_id, "prefect", "ui", "postgres"))
    running = run_row(machine_pg, run_id)
    assert (running["status"], running["trigger"], running["target"]) == (
        "running",
        "api",
        "duckdb",
    )
    assert running["queued_at"] == queued["queued_at"] < running["started_at"]
    ledger.write(RunFinished(run_id, "success"))
    ledger.write(RunQueued(run_id, "prefect", "api", "duckdb"))  # a late, replayed ask
    assert run_row(machine_pg, run_id)["status"] == "success"


def test_a_queued_run_nothing_picked_up_is_abandoned_the_waiting_ones_are_kept(
    stack: Path, machine_pg: str
) -> None:
    ctx = RunContext(load_config(stack, {}), new_run_id())
    ledger = ctx.ledger
    lost, fresh, waiting, died = (new_run_id() for _ in range(4))
    for run_id in (lost, fresh, waiting, died):
        ledger.write(RunQueued(run_id, "prefect", "api", "duckdb"))
    ledger.write(LeaseClaimed(waiting, this_host(), 1))  # a flow run waiting for the run lock
    ledger.write(LeaseClaimed(died, this_host(), dead_pid()))
    with psycopg.connect(machine_pg, autocommit=True) as conn:
        conn.execute(
            "update millpond.runs set started_at = now() - interval '1 hour', "
            "queued_at = now() - interval '1 hour' where run_id = %s",
            (lost,),
        )
    closed = {r["run_id"] for r in close_dead_runs(ctx)}
    assert closed == {lost, died}
    assert "never started" in run_row(machine_pg, lost)["error"]
    assert "is gone" in run_row(machine_pg, died)["error"]
    assert [run_row(machine_pg, r)["status"] for r in (lost, died, fresh, waiting)] == [
        "abandoned",
        "abandoned",
        "queued",
        "queued",
    ]


def test_a_deployment_run_whose_config_has_a_missing_var_is_recorded_failed(
    stack: Path, machine_pg: str, receiver: Receiver
) -> None:
    """The deployment's process lacks a ${VAR} the config gained since `millpond ui`: the run
    is in the ledger, `millpond status` and the webhook, failed with the variable named."""
    stack.write_text(
        stack.read_text() + "dbt:\n  vars: {api_token: '${LIFECYCLE_TOKEN}'}\n"
        "sources:\n  erp: {kind: files, path: '${LIFECYCLE_INBOX}', tables: [orders]}\n"
    )
    run_id = new_run_id()
    env = {"MILLPOND_CONFIG": str(stack), "LIFECYCLE_INBOX": "inbox"}
    with pytest.raises(ConfigUnreadable, match=r"\$\{LIFECYCLE_TOKEN\} is not set"):
        load_or_record(run_id, "schedule", "flow-run-7", env)
    run = run_row(machine_pg, run_id)
    assert (run["status"], run["trigger"], run["flow_run_id"]) == (
        "failed",
        "schedule",
        "flow-run-7",
    )
    assert "dbt.vars.api_token" in run["error"] and "LIFECYCLE_TOKEN" in run["error"]
    [told] = receiver.for_run(run_id)
    assert told["status"] == "failed" and "LIFECYCLE_TOKEN" in told["error"]
    assert told["rows"] == 0 and "failure" in told["events"]
    with connect(machine_pg) as conn:
        served = queries.get_run(conn, run_id)
    assert served is not None and told["duration_ms"] == served["duration_ms"]
    status = millpond(
        stack.parent,
        "status",
        run_id,
        env={"LIFECYCLE_TOKEN": "t0ken-value", "LIFECYCLE_INBOX": "inbox"},
    )
    assert status.returncode == 0, status.stderr
    assert "failed" in status.stdout and "LIFECYCLE_TOKEN" in status.stdout
    assert "schedule" in status.stdout


def test_the_webhook_tells_the_ledgers_rows_and_duration(
    stack: Path, machine_pg: str, receiver: Receiver
) -> None:
    """Rows are the rows this run loaded (not every node's rows added up), the duration is
    finished - started as `/runs/{id}` serves it."""
    config = load_config(stack, {})
    run_id = new_run_id()
    with Ledger(machine_pg, Path(stack.parent / "buffer.jsonl")) as ledger:
        ledger.write(RunStarted(run_id, "prefect", "cli", "duckdb"))
        outcomes = [
            NodeOutcome("load.erp.orders", "success", rows=150),
            NodeOutcome("dbt.fct_orders", "success", rows=1_500_000),
            NodeOutcome("load.erp.lineitem", "unchanged", rows=0),
        ]
        summary = close_run(config, ledger, run_id, "success", None, outcomes, rows=150)
    with connect(machine_pg) as conn:
        served = queries.get_run(conn, run_id)
    assert served is not None
    [told] = receiver.for_run(run_id)
    assert told["rows"] == served["summary"]["rows"] == summary["rows"] == 150
    assert told["duration_ms"] == served["duration_ms"]
    assert told["duration_seconds"] == round(served["duration_ms"] / 1000, 1)


def test_post_runs_knows_its_run_at_once_and_a_child_that_cannot_read_the_config_records_why(
    stack: Path, machine_pg: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a served deployment `POST /runs` starts `millpond run --run-id`: the run is
    queued before the process exists; the config broke after the API read it, so the process
    closes the run failed with the reason."""
    from serve_helpers import api_for

    monkeypatch.delenv("MILLPOND_API_KEYS", raising=False)
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:9/api-{uuid.uuid4().hex[:6]}")
    with api_for(stack, monkeypatch) as api:
        api.get("/runs")  # the API reads (and caches) the config while it is good
        stack.write_text(stack.read_text() + "dbt: {vars: {token: '${LIFECYCLE_GONE}'}}\n")
        started = api.post("/runs")
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        at_once = api.get(f"/runs/{run_id}")
        assert at_once.status_code == 200, at_once.text
        assert at_once.json()["trigger"] == "api" and at_once.json()["queued_at"]
        final = wait_closed(api, run_id)
    assert final["status"] == "failed", final
    assert "LIFECYCLE_GONE" in final["error"]
    assert [b["status"] for b in receiver.for_run(run_id)] == ["failed"]
