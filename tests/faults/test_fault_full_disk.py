"""A full disk under the lake: the run fails saying so, nothing is half-landed, and the next
run once space is freed is green."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import millpond

from faults.harness import (
    ORDERS,
    REVENUE,
    half_landed,
    ledger,
    local_lake,
    published,
)

pytestmark = pytest.mark.e2e


def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


def test_a_full_disk_under_the_lake_fails_the_run_and_the_next_run_is_green(
    acme: Path, machine_pg: str, prefect_api: str
) -> None:
    """The lake on a 1 MB tmpfs filled up: the extract fails (nothing half-landed, no
    partition), the ledger says why; once space is freed the next run lands and is green."""
    if not can_mount():
        pytest.skip("mounting a small tmpfs needs root (mount -t tmpfs)")
    lake = acme / ".millpond" / "lake"
    lake.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(lake)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"this machine does not allow a tmpfs mount: {mounted.stderr.decode()}")
    env = {"MILLPOND_METADATA__URL": machine_pg}
    try:
        filler = lake / "filler"
        with filler.open("wb") as out:
            try:
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            except OSError:
                pass
        full = millpond(acme, "run", env=env)
        assert full.returncode == 1, full.stdout + full.stderr
        output = full.stdout + full.stderr
        assert "No space left on device" in output or "disk is full" in output, output
        assert half_landed(local_lake(acme)) == []
        [run] = ledger(machine_pg, "select status, error from millpond.runs")
        assert run["status"] == "failed"
        [extract] = ledger(
            machine_pg,
            "select error from millpond.node_runs where node_id = 'extract.shop.orders' "
            "order by attempt desc limit 1",
        )
        # A full disk is not the file's fault: it is not recorded as a rejected file.
        assert "disk full" in extract["error"] and "not rejected" in extract["error"], extract
        rejected = [p.name for p in (lake / "rejected").rglob("*") if p.is_file()]
        assert rejected == [], (rejected, extract["error"])
        assert ledger(machine_pg, "select * from millpond.rejected_files") == []

        filler.unlink()
        green = millpond(acme, "run", env=env)
        assert green.returncode == 0, green.stdout + green.stderr
        assert published(acme) == (ORDERS, REVENUE)
        assert half_landed(local_lake(acme)) == []
    finally:
        millpond(acme, "down")
        subprocess.run(["umount", "-l", str(lake)], check=False)
