"""Triggering a run from the API without a served deployment: `millpond run --trigger api` in a
background process (with one, serve/prefect_trigger.py creates a flow run of it instead).

One run at a time per stack: a run holds `<state>/locks/run.lock` while it runs, and a child
this service started is "running" from its spawn until it exits (before it takes the lock).
The run id is the name of the log file the child opens first thing (`<logs>/<run_id>.jsonl`),
so the caller gets it within a second, long before the Prefect flow starts.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from millpond.core.config import MillpondConfig

RUN_ID_WAIT_S = 30.0


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
    path = config.locks_dir / "run.lock"
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
    config: MillpondConfig, config_file: Path, running_id: str | None, args: Sequence[str] = ()
) -> Child:
    """Spawn the run, or raise AlreadyRunning (with the ledger's idea of the running run)."""
    global _child
    with _lock:
        child = running_child()
        if child is not None:
            raise AlreadyRunning(child.run_id)
        if run_lock_held(config):
            raise AlreadyRunning(running_id)
        logs = config.logs_dir
        logs.mkdir(parents=True, exist_ok=True)
        before = {p.name for p in logs.glob("*.jsonl")}
        out = open(logs / "api-trigger.log", "ab")  # noqa: SIM115 - the child owns it
        process = subprocess.Popen(
            [millpond_command(), "run", "--trigger", "api", "--config", str(config_file), *args],
            cwd=str(config.root),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        _child = Child(process, None)
        _child.run_id = _wait_for_run_id(process, logs, before)
        return _child


def _wait_for_run_id(process: subprocess.Popen[bytes], logs: Path, before: set[str]) -> str:
    deadline = time.monotonic() + RUN_ID_WAIT_S
    while time.monotonic() < deadline:
        new = sorted(p.stem for p in logs.glob("*.jsonl") if p.name not in before)
        if new:
            return new[-1]
        if process.poll() is not None:
            raise TriggerFailed(f"the run process exited with {process.returncode} before it began")
        time.sleep(0.05)
    raise TriggerFailed("the run process did not open its run in time")
