"""Triggering a run from the API without a served deployment: `millpond run --trigger api` in a
background process (with one, serve/prefect_trigger.py creates a flow run of it instead).

One run at a time per stack: a run holds `<state>/locks/run.lock` while it runs, and a child
this service started is "running" from its spawn until it exits (before it takes the lock).
The run id is made here and recorded (`queue`) before the child is spawned, which runs under
it (`millpond run --run-id`), so the caller gets an id that `GET /runs/{id}` knows at once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from millpond.core.config import MillpondConfig
from millpond.core.locks import run_lock_path
from millpond.core.runid import new_run_id


class AlreadyRunning(Exception):
    def __init__(self, run_id: str | None) -> None:
        super().__init__(f"a run is already running: {run_id or 'unknown id'}")
        self.run_id = run_id


class TriggerFailed(Exception):
    """The run process could not start or exited before it opened its run."""


@dataclass
class Child:
    process: subprocess.Popen[bytes]
    run_id: str | None


_lock = threading.Lock()
_child: Child | None = None


def run_lock_held(config: MillpondConfig) -> bool:
    """True if some process (a CLI run, a scheduled one, ours) holds the run lock now."""
    path = run_lock_path(config.locks_dir)
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def running_child() -> Child | None:
    """The run this service started, while its process lives."""
    global _child
    if _child is not None and _child.process.poll() is not None:
        _child = None
    return _child


def millpond_command() -> str:
    """The `millpond` console script of this environment (MILLPOND_BIN overrides)."""
    if os.environ.get("MILLPOND_BIN"):
        return os.environ["MILLPOND_BIN"]
    beside = Path(sys.executable).with_name("millpond")
    return str(beside) if beside.exists() else (shutil.which("millpond") or "millpond")


def start_run(
    config: MillpondConfig,
    config_file: Path,
    running_id: str | None,
    args: Sequence[str] = (),
    queue: Callable[[str], None] = lambda run_id: None,
) -> Child:
    """Spawn the run, or raise AlreadyRunning (with the ledger's idea of the running run);
    `queue(run_id)` records the run before its process exists."""
    global _child
    with _lock:
        child = running_child()
        if child is not None:
            raise AlreadyRunning(child.run_id)
        if run_lock_held(config):
            raise AlreadyRunning(running_id)
        run_id = new_run_id()
        queue(run_id)
        logs = config.logs_dir
        command = [millpond_command(), "run", "--trigger", "api", "--run-id", run_id]
        try:
            logs.mkdir(parents=True, exist_ok=True)
            with open(logs / "api-trigger.log", "ab") as out:  # the child keeps its own copy
                process = subprocess.Popen(
                    [*command, "--config", str(config_file), *args],
                    cwd=str(config.root),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        except OSError as exc:
            raise TriggerFailed(f"the run process could not start: {exc}") from None
        _child = Child(process, run_id)
        return _child
