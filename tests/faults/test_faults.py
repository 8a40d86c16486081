"""`kill -9` at several points of every stage of `millpond run`, on a tiny project (five order
rows, the acme dbt project): the next run is clean and green, nothing is half-landed or
loaded twice, and the killed runs are closed `abandoned`.

A run is stopped at an exact point by tests/faults/paused_millpond.py (the real CLI, one
thread held at that point) and killed there with SIGKILL, as `kill -9` would. What
tests/e2e/test_run_lifecycle.py covers already (a kill while any node runs, the lease) is not
repeated; this file adds the named points of each stage. The servers going away and a full
disk are in this folder's other files (a file per fault, so the workers run them side by side).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import millpond

from faults.harness import (
    ORDERS,
    REVENUE,
    half_landed,
    kill_9,
    ledger,
    local_lake,
    published,
    start_paused,
)

pytestmark = pytest.mark.e2e


# Each run is killed at its point; the next one starts by closing it `abandoned` and redoes
# what it left, up to its own point: so each run also checks the recovery from the kill
# before it, and the last, unkilled run must be green.
POINTS = ["landing", "landed", "load", "loaded", "dbt", "publish", "switch"]


def test_kill_9_at_every_stage_then_the_next_run_is_green_and_nothing_is_half_done(
    acme: Path, machine_pg: str, prefect_api: str
) -> None:
    env = {"MILLPOND_METADATA__URL": machine_pg}
    killed: dict[str, str] = {}
    for point in POINTS:
        run = start_paused(acme, point, env)
        if point == "landing":  # the parts are in the lake, the manifest is not
            assert half_landed(local_lake(acme)), local_lake(acme)
        kill_9(run)
        [row] = ledger(machine_pg, "select run_id from millpond.runs where pid = %s", run.pid)
        killed[point] = row["run_id"]

    green = millpond(acme, "run", env=env)
    assert green.returncode == 0, green.stdout + green.stderr
    assert published(acme) == (ORDERS, REVENUE)  # every row once: none lost, none twice

    runs = {r["run_id"]: r for r in ledger(machine_pg, "select * from millpond.runs")}
    for point, run_id in killed.items():
        assert runs[run_id]["status"] == "abandoned", (point, runs[run_id])
        assert runs[run_id]["finished_at"] is not None
    nodes = ledger(machine_pg, "select status from millpond.node_runs where status = 'running'")
    assert nodes == []
    assert half_landed(local_lake(acme)) == []
    # The kills after the manifest and after the warehouse's commit left no partition the
    # ledger does not know is loaded (else every run with nothing new would start a flow).
    partitions = ledger(machine_pg, "select partition_id, loaded_at from millpond.partitions")
    manifests = [f for f in local_lake(acme) if f.endswith("_manifest.json")]
    assert len(partitions) == len(manifests) == 1, (partitions, manifests)
    assert partitions[0]["loaded_at"] is not None
    # The kill mid-publish left no half-written snapshot behind once a publish succeeded.
    leftovers = [p.name for p in (acme / ".millpond" / "published").iterdir() if ".tmp" in p.name]
    assert leftovers == []

    again = millpond(acme, "run", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing new: nothing landed, loaded, rebuilt or published" in again.stdout, again.stdout
    assert published(acme) == (ORDERS, REVENUE)
