"""The fault tests' harness: a tiny project (five order rows, the acme dbt project), `millpond
run` held at a named point by tests/faults/paused_millpond.py (the real CLI, one thread held
there) and killed there with SIGKILL as `kill -9` would, and what a reader and the lake show
afterwards. The tests are split by fault, a file each, so `just test`'s workers run them side
by side (each file is one worker's unit of work)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import psycopg
from conftest import (
    write_acme_project,
)
from psycopg.rows import dict_row

HERE = Path(__file__).resolve().parent
# The acme inbox: five orders, 2 FR, 2 DE, 1 NL; revenue 43.75 in all.
ORDERS, REVENUE = 5, 43.75


def tiny_project(root: Path, extra: str = "") -> Path:
    return write_acme_project(root, extra)


def start_paused(root: Path, point: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`millpond run` held at `point`; returns once it is there."""
    folder = root / ".fault"
    folder.mkdir(exist_ok=True)
    run = subprocess.Popen(
        [sys.executable, str(HERE / "paused_millpond.py"), point, str(folder), "run"],
        cwd=root,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=open(folder / f"{point}.log", "wb"),  # noqa: SIM115 (the child owns it)
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not (folder / f"{point}.reached").exists():
        if run.poll() is not None:
            raise AssertionError(f"ended before {point}: {(folder / f'{point}.log').read_text()}")
        assert time.monotonic() < deadline, f"never reached {point}"
        time.sleep(0.05)
    return run


def go_on(root: Path, point: str) -> None:
    (root / ".fault" / f"{point}.go").touch()


def kill_9(run: subprocess.Popen[bytes]) -> None:
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()


def ledger(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def published(root: Path) -> tuple[int, float]:
    """Orders and revenue in the published marts, as a reader sees them."""
    current = root / ".millpond" / "published" / "current"
    with duckdb.connect(str(current), read_only=True) as con:
        orders, revenue = con.execute(
            "select sum(order_count), sum(revenue) from main.orders_by_country"
        ).fetchone()  # type: ignore[misc]
    return int(orders), float(revenue)


def half_landed(lake_files: list[str]) -> list[str]:
    """Partition folders holding files but no manifest (a landing that never finished);
    S3's folder markers (keys ending in `/`) hold nothing."""
    folders = {
        str(Path(f).parent)
        for f in lake_files
        if "raw/" in f and "/run=" in f and not f.endswith("/")
    }
    return sorted(f for f in folders if f"{f}/_manifest.json" not in lake_files)


def local_lake(root: Path) -> list[str]:
    lake = root / ".millpond" / "lake"
    return [str(p.relative_to(lake)) for p in lake.rglob("*") if p.is_file()]


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split()[0])
