"""Exclusive access to the DuckDB warehouse file, across threads and processes.

DuckDB allows one writing process per file, and a second writer fails at once with a lock
error. millpond's writers (load nodes, dbt nodes, publish) may run in threads of one Prefect
flow or in separate `millpond run-node` processes under Airflow, so each takes this lock
(`<warehouse>.lock`) and waits its turn instead of failing. The connection is closed before
the lock is released, so the next writer, in any process, can open the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from millpond.core.locks import file_lock
from millpond.targets.duckdb.damage import open_checked


@contextmanager
def warehouse_lock(path: Path, wait_seconds: float = 3600.0) -> Iterator[None]:
    """Hold the warehouse's writer lock for the block (re-entrant within a thread)."""
    with file_lock(Path(f"{path}.lock"), "warehouse", wait_seconds):
        yield


@contextmanager
def open_warehouse(
    path: Path, setup: Callable[[duckdb.DuckDBPyConnection], None] | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A writable connection to the warehouse, under the writer lock; `setup` prepares it
    (an S3 lake's httpfs and secret) before use. A damaged file raises WarehouseDamaged,
    which names it and the repair."""
    with warehouse_lock(path):
        con = open_checked(path)
        try:
            if setup is not None:
                setup(con)
            yield con
        finally:
            con.close()
