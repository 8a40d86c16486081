"""Records buffered while a ledger was down go to that ledger and no other, with two real
PostgreSQL databases: ledger A goes down mid-run, `metadata.url` moves to ledger B, then back."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import captured_warnings, new_database
from pg_helpers import refusing
from psycopg.rows import dict_row

from millpond.core.config_loading import load_config
from millpond.metadata.buffer import buffer_path, ledger_identity, stranded_buffers
from millpond.metadata.db import migrate
from millpond.metadata.ledger import Ledger
from millpond.metadata.records import (
    LeaseClaimed,
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from millpond.runtime.context import RunContext
from millpond.runtime.lifecycle import close_dead_runs, this_host

pytestmark = pytest.mark.integration


@pytest.fixture
def ledger_b(pg_server: str) -> Iterator[str]:
    """A second fresh database on the session's PostgreSQL (machine_pg is the first)."""
    with new_database(pg_server) as url:
        yield url


def runs(url: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute("select * from millpond.runs").fetchall()
    return {r["run_id"]: dict(r) for r in rows}


def context(folder: Path, url: str, run_id: str) -> RunContext:
    """A run of the stack in `folder` whose millpond.yml points metadata.url at `url`."""
    (folder / "millpond.yml").write_text(f"project: buffers\nmetadata: {{url: '{url}'}}\n")
    return RunContext(load_config(folder / "millpond.yml", {}), run_id)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_buffered_for_ledger_a_is_replayed_into_a_only(
    machine_pg: str, ledger_b: str, tmp_path: Path
) -> None:
    ledger_a = machine_pg
    migrate(ledger_a)
    migrate(ledger_b)
    run_id = "20261204T060000Z-abcdef"
    state = tmp_path / ".millpond"

    # The run opens in A, then A goes down: the rest of the run is buffered for A.
    first = context(tmp_path, ledger_a, run_id)
    first.ledger.write(RunStarted(run_id, "prefect", "cli", "duckdb"))
    first.ledger.write(LeaseClaimed(run_id, this_host(), dead_pid()))  # the run's process has ended
    with refusing(ledger_a, drop_open=True):
        first.ledger.write(NodeStarted(run_id, "extract.erp.orders", "extract"))
        first.ledger.write(NodeFinished(run_id, "extract.erp.orders", 1, "success", 40, rows=150))
        first.ledger.write(RunFinished(run_id, "success", summary={"rows": 150}))
    a_buffer = buffer_path(state, ledger_a)
    assert first.ledger.buffer_path == a_buffer and a_buffer.exists()
    first.ledger.close()

    # metadata.url now points at B: A's records stay where they are, and the user is told.
    with captured_warnings() as said:
        second = context(tmp_path, ledger_b, "20261204T070000Z-123456")
        second.ledger.write(RunStarted(second.run_id, "prefect", "cli", "duckdb"))
    assert run_id not in runs(ledger_b)
    assert a_buffer.exists()
    assert stranded_buffers(state, ledger_b) == [(a_buffer, ledger_identity(ledger_a))]
    [warning] = [w for w in said if "another ledger" in w]
    assert str(a_buffer.parent) in warning and ledger_identity(ledger_a) in warning
    second.ledger.close()

    # Back on A, now up: the buffered records land in A, and the run is the success it was,
    # never closed as abandoned by the next start.
    third = context(tmp_path, ledger_a, "20261204T080000Z-fedcba")
    third.ledger.write(RunStarted(third.run_id, "prefect", "cli", "duckdb"))
    assert close_dead_runs(third) == []
    run = runs(ledger_a)[run_id]
    assert (run["status"], run["summary"]) == ("success", {"rows": 150})
    assert not a_buffer.exists()
    assert stranded_buffers(state, ledger_a) == []
    assert set(runs(ledger_b)) == {second.run_id}
    third.ledger.close()


def test_a_buffer_from_before_buffers_had_keys_is_kept_and_named(
    machine_pg: str, tmp_path: Path
) -> None:
    migrate(machine_pg)
    state = tmp_path / ".millpond"
    state.mkdir()
    legacy = state / "ledger-buffer.jsonl"
    line = (
        '{"op": "start_run", "args": {"run_id": "old", "orchestrator": "prefect", "trigger": '
        '"cli", "target": "duckdb", "flow_run_id": null, "at": {"$datetime": '
        '"2026-12-01T06:00:00+00:00"}}}\n'
    )
    legacy.write_text(line)
    with captured_warnings() as said:
        ctx = context(tmp_path, machine_pg, "20261204T090000Z-aaaaaa")
        ctx.ledger.write(RunStarted(ctx.run_id, "prefect", "cli", "duckdb"))
    assert "old" not in runs(machine_pg)
    assert legacy.read_text() == line
    [warning] = [w for w in said if str(legacy) in w]
    assert "move the file to" in warning and str(buffer_path(state, machine_pg)) in warning
    ctx.ledger.close()


def test_a_buffer_file_of_another_ledger_is_refused(machine_pg: str, tmp_path: Path) -> None:
    other = "postgresql://postgres@127.0.0.1:1/elsewhere"
    path = tmp_path / "buffer.jsonl"
    with refusing(machine_pg):
        Ledger(machine_pg, path).write(RunStarted("x", "prefect", "cli", "duckdb"))
    with pytest.raises(ValueError, match="buffers records for the ledger"):
        Ledger(other, path)
