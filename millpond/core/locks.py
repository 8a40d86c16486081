"""Named exclusive locks that hold across threads and processes on one machine.

A lock is a file; holding it means a thread lock (for threads of this process, since `flock`
is per open file, not per thread) plus an `fcntl.flock` on the file (for other processes, e.g.
`millpond run-node` tasks under Airflow or a second `millpond run`). Re-entrant within a
thread. Waiters are told once that they wait, then wait quietly until the deadline.
"""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from millpond.core.logs import logger

_registry_lock = threading.Lock()
_thread_locks: dict[str, threading.Lock] = {}
_held = threading.local()


def _thread_lock(key: str) -> threading.Lock:
    with _registry_lock:
        return _thread_locks.setdefault(key, threading.Lock())


@contextmanager
def file_lock(path: Path, what: str, wait_seconds: float = 3600.0) -> Iterator[None]:
    """Hold the lock stored at `path` for the block; `what` names it in messages."""
    key = str(path.resolve())
    depth: dict[str, int] = _held.__dict__.setdefault("depth", {})
    if depth.get(key):  # this thread holds it already
        depth[key] += 1
        try:
            yield
        finally:
            depth[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with _thread_lock(key), open(path, "a+") as handle:
        deadline = time.monotonic() + wait_seconds
        announced = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    message = f"{what} lock: another process held {path} too long"
                    raise TimeoutError(message) from None
                if not announced:
                    logger.info(f"waiting for the {what} lock ({path.name})")
                    announced = True
                time.sleep(0.1)
        depth[key] = 1
        try:
            yield
        finally:
            depth[key] = 0
            fcntl.flock(handle, fcntl.LOCK_UN)


# The stack's named locks, each spelled here once (docs/architecture.md, "Concurrency and locks").


def run_lock_path(locks_dir: Path) -> Path:
    """One run at a time per stack; `POST /runs` looks whether it is held."""
    return locks_dir / "run.lock"


def run_lock(locks_dir: Path, wait_seconds: float = 3600.0) -> AbstractContextManager[None]:
    return file_lock(run_lock_path(locks_dir), "run", wait_seconds)


def extract_lock(locks_dir: Path, source: str, table: str) -> AbstractContextManager[None]:
    """A table's new items are landed once, even by two runs at once."""
    return file_lock(locks_dir / f"extract.{source}.{table}.lock", f"extract {source}.{table}")


def dbt_parse_lock(locks_dir: Path) -> AbstractContextManager[None]:
    """Parallel `run-node` processes never read a manifest.json dbt is rewriting."""
    return file_lock(locks_dir / "dbt-parse.lock", "dbt parse")
