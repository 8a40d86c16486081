"""Exclusive access to the DuckDB warehouse file, across threads and processes.

DuckDB allows one writing process per file, and a second writer fails at once with a lock
error. millpond's writers (load nodes, dbt nodes, publish) may run in threads of one Prefect
flow or in separate `millpond run-node` processes under Airflow, so each takes this lock
(a thread lock plus an fcntl lock on `<warehouse>.lock`) and waits its turn instead of
failing. The connection is closed before the lock is released, so the next writer, in any
process, can open the file.
"""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from millpond.logs import logger

_thread_lock = threading.RLock()
_held = threading.local()


@contextmanager
def warehouse_lock(path: Path, wait_seconds: float = 3600.0) -> Iterator[None]:
    """Hold the warehouse's writer lock for the block (re-entrant within a thread)."""
    if getattr(_held, "depth", 0):  # this thread holds it already
        _held.depth += 1
        try:
            yield
        finally:
            _held.depth -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with _thread_lock, open(f"{path}.lock", "a+") as handle:
        deadline = time.monotonic() + wait_seconds
        announced = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{path}: another process held the warehouse lock too long"
                    ) from None
                if not announced:
                    logger.info(f"waiting for the warehouse lock on {path.name}")
                    announced = True
                time.sleep(0.1)
        _held.depth = 1
        try:
            yield
        finally:
            _held.depth = 0
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def open_warehouse(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A writable connection to the warehouse, under the writer lock."""
    with warehouse_lock(path):
        con = duckdb.connect(str(path))
        try:
            yield con
        finally:
            con.close()
