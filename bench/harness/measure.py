"""Wall time and peak RSS of a command's whole process tree, and medians over repeats.

Peak RSS is sampled (every 50 ms) as the sum over the process and all its descendants, because
`millpond run` does its work in threads of one process but dbt, DuckDB and pgserver may start
children; `resource.getrusage(RUSAGE_CHILDREN)` would only give the largest single child.
Processes that detach from the tree (the embedded PostgreSQL daemon, the Prefect server) are
not counted: they are shared services, as a server would be for dlt or dbt.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

SAMPLE_SECONDS = 0.05


class CaseFailed(RuntimeError):
    """A benchmarked command exited non-zero: its output tail says why."""


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss_mb: float
    stdout: str


def _tree_rss(root: psutil.Process) -> int:
    total = 0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue
    return total


def run_measured(
    command: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 1800.0,
) -> Measured:
    """Run `command`, sampling its tree's RSS; raise CaseFailed with its output if it fails."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(process.pid)
        while not done.is_set():
            peak = max(peak, _tree_rss(root))
            done.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise CaseFailed(f"{' '.join(command)} timed out after {timeout:.0f} s") from None
    finally:
        done.set()
        sampler.join()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise CaseFailed(
            f"{' '.join(command)} exited {process.returncode}:\n{stdout[-3000:]}\n{stderr[-3000:]}"
        )
    return Measured(round(seconds, 3), round(peak / 2**20, 1), stdout)


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements (one value: all three equal)."""
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }
