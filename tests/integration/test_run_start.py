"""The one run start (millpond.runtime.start.run_whole) against a real ledger: a run that cannot
start is closed `failed` with the reason, never reaches the orchestrator, and leaves the run
lock free; a queued run (a flow run of the deployment) is opened only under the run lock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from millpond.core.config_loading import load_config
from millpond.core.runid import new_run_id
from millpond.metadata.db import migrate
from millpond.runtime.context import RunContext
from millpond.runtime.lifecycle import queue_run
from millpond.runtime.start import StartFailed, run_whole
from millpond.serve.trigger import run_lock_held

pytestmark = pytest.mark.integration


class Recording:
    """An orchestrator that only notes what the run start asked of it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def connect(self) -> None:
        self.calls.append("connect")

    def run(self, hooks: Any) -> bool:
        self.calls.append("run")
        return True


def run_row(url: str, run_id: str) -> dict[str, Any]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        row = conn.execute("select * from millpond.runs where run_id = %s", (run_id,)).fetchone()
    assert row is not None, f"{run_id} is not in the ledger"
    return dict(row)


@pytest.fixture
def broken(machine_pg: str, tmp_path: Path) -> RunContext:
    """A run of a project whose dbt project is missing: its graph cannot be built."""
    migrate(machine_pg)
    config = tmp_path / "millpond.yml"
    config.write_text(
        f"project: start\nstate_dir: state\nmetadata: {{url: '{machine_pg}'}}\n"
        "dbt: {project_dir: no-such-dbt-project}\n"
    )
    return RunContext.for_run(load_config(config, {}), new_run_id())


@pytest.mark.parametrize("queued", [False, True], ids=["millpond run", "deployment"])
def test_a_run_that_cannot_start_is_closed_failed_before_the_orchestrator(
    broken: RunContext, machine_pg: str, queued: bool
) -> None:
    if queued:
        queue_run(broken, "ui")
    orchestrator = Recording()
    with pytest.raises(StartFailed, match=r"cannot start the run: .*no-such-dbt-project"):
        run_whole(broken, "ui" if queued else "cli", orchestrator, queued=queued)
    assert orchestrator.calls == []
    run = run_row(machine_pg, broken.run_id)
    assert run["status"] == "failed" and run["finished_at"] is not None
    assert run["error"].startswith("cannot start the run: ")
    assert (run["queued_at"] is not None) == queued
    assert broken.closed == "failed"
    assert not run_lock_held(broken.config)  # the run lock was let go
