"""The ledger's PostgreSQL killed mid-run (SIGKILL to its postmaster): the run completes on
its buffer, and the next run, with the server back, flushes what the first one buffered."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from conftest import millpond

from faults.harness import (
    ORDERS,
    REVENUE,
    go_on,
    ledger,
    postmaster_pid,
    published,
    start_paused,
    tiny_project,
)

pytestmark = pytest.mark.e2e


def test_a_ledger_server_killed_mid_run_the_run_completes_buffers_and_flushes_later(
    tmp_path: Path, prefect_api: str
) -> None:
    from millpond.metadata.buffer import buffer_path
    from millpond.metadata.embedded import start_embedded, stop_embedded

    data_dir = tmp_path / "ledger-pg"
    url = start_embedded(data_dir, keep_running=True)
    root = tiny_project(tmp_path / "acme")
    env = {"MILLPOND_METADATA__URL": url}
    try:
        run = start_paused(root, "ledger", env)  # extract done and recorded, load not begun
        os.kill(postmaster_pid(data_dir), signal.SIGKILL)
        go_on(root, "ledger")
        run.wait(600)
        log = (root / ".fault" / "ledger.log").read_text()
        assert run.returncode == 0, log  # the data does not depend on the ledger
        buffer = buffer_path(root / ".millpond", url)  # the buffer of this very ledger
        assert buffer.is_file() and buffer.stat().st_size > 0
        assert published(root) == (ORDERS, REVENUE)

        url = start_embedded(data_dir, keep_running=True)  # the server is back
        again = millpond(root, "run", env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        runs = ledger(url, "select run_id, status from millpond.runs order by started_at")
        assert [r["status"] for r in runs] == ["success", "success"], runs
        nodes = ledger(
            url,
            "select node_id, status from millpond.node_runs where run_id = %s",
            runs[0]["run_id"],
        )
        assert {n["node_id"]: n["status"] for n in nodes}["publish"] == "success"
        assert not buffer.exists() or buffer.stat().st_size == 0
    finally:
        millpond(root, "down")
        stop_embedded(data_dir)
