"""notebooks/explore.ipynb run headless (nbclient, a real ipykernel) against a demo run while
another run builds: no cell errors, the plots are images, the numbers are the snapshot's.

The kernel and nbclient come with the dev extra (`notebook-kernel`), so this needs no network."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import BIN, REPO, millpond, write_project

pytestmark = pytest.mark.e2e

NOTEBOOK = REPO / "notebooks" / "explore.ipynb"


@pytest.fixture(scope="module")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory, demo_files: Path, prefect_api: str
) -> Iterator[Path]:
    """A project after one demo run (TPC-H 0.01): a published snapshot and a ledger."""
    root = write_project(tmp_path_factory.mktemp("notebook") / "project", demo_files)
    result = millpond(root, "run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    yield root
    from millpond.metadata.embedded import stop_embedded

    stop_embedded(root / ".millpond" / "pg")


def ledger(root: Path) -> str:
    """The project's embedded ledger (started if it is not running)."""
    from millpond.metadata.db import resolve_url

    return resolve_url("embedded", root / ".millpond")


def running_run(root: Path, process: subprocess.Popen[str]) -> str | None:
    """The id of the run the ledger shows running, once the background run has opened it."""
    from millpond.metadata import queries
    from millpond.metadata.db import connect

    url = ledger(root)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        with connect(url) as conn:
            running = queries.running_runs(conn)
        if running:
            return str(running[0]["run_id"])
        time.sleep(0.3)
    return None


def outputs(cell: Any) -> tuple[str, list[str]]:
    """A code cell's text (stdout and text/plain results) and the MIME types it displayed."""
    text, kinds = [], []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            text.append(out["text"])
        data = out.get("data", {})
        kinds.extend(data)
        text.append(data.get("text/plain", ""))
    return "".join(text), kinds


def test_the_explore_notebook_runs_headless_while_a_run_builds(
    demo_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws PNGs
    from millpond.metadata import queries
    from millpond.metadata.db import connect

    with connect(ledger(demo_run)) as conn:
        (first,) = queries.list_runs(conn)
    assert first["status"] == "success"
    background = subprocess.Popen(
        [str(BIN / "millpond"), "run", "--full-refresh"],
        cwd=demo_run,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        building = running_run(demo_run, background)
        assert building, "the background run never showed as running in the ledger"
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": demo_run}}
        ).execute()  # raises CellExecutionError naming the cell if any cell fails
        log, _ = background.communicate(timeout=900)
    finally:
        if background.poll() is None:
            background.kill()
            background.wait()
    assert background.returncode == 0, log[-3000:]
    artifacts = REPO / ".millpond" / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, artifacts / "explore.ipynb")  # as it ran, plots included

    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.get("outputs", []) if o["output_type"] == "error"]
    images = [c for c in code if "image/png" in outputs(c)[1]]
    assert len(images) == 2, "the revenue plot and the run history plot"

    snapshot = duckdb.connect(str(demo_run / ".millpond" / "published" / "current"), read_only=True)
    months, revenue, orders = snapshot.sql(
        "select count(*), sum(revenue), sum(order_count) from aggregates.agg_monthly_revenue"
    ).fetchone()
    snapshot.close()
    assert months > 12 and orders > 1000
    texts = "\n".join(outputs(c)[0] for c in code)
    assert f"months: {months}, revenue: {revenue:,.2f}, orders: {orders:,}" in texts
    assert "agg_monthly_revenue" in texts  # the table of the snapshot's relations
    # the run history: the first run as it finished, and the run that was building
    history = next(outputs(c)[0] for c in code if " nodes" in outputs(c)[0])
    assert any(first["run_id"] in line and "success" in line for line in history.splitlines())
    assert building in history
