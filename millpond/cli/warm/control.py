"""Starting and stopping a stack's warm node worker: `millpond run-start` starts one per run
(after stopping one an earlier run left), `millpond run-finish` and `millpond down` stop it."""

from __future__ import annotations

import subprocess
import sys
import time

from millpond.cli.warm.client import request
from millpond.cli.warm.wire import socket_path
from millpond.core.config import MillpondConfig

# Importing dbt and the kinds takes ~5 s on an idle machine; a busy one may need far more.
READY_TIMEOUT_SECONDS = 60.0


def start_worker(config: MillpondConfig) -> str:
    """Start the stack's worker and wait until it serves; says what happened (the run goes on
    either way: without a worker, nodes run inline)."""
    if not config.airflow.warm_worker:
        return "warm node worker: off (airflow.warm_worker)"
    path = socket_path(config.state)
    stop_worker(config)
    log = config.state / "run" / "node-worker.log"
    log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    command = [sys.executable, "-m", "millpond.cli.warm.server", str(path)]
    command += [
        "--idle",
        str(config.airflow.warm_worker_idle_seconds),
        "--state",
        str(config.state),
    ]
    started = time.perf_counter()
    with open(log, "ab") as sink:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this task, out of reach of its process group
        )
    while time.perf_counter() - started < READY_TIMEOUT_SECONDS:
        if process.poll() is not None:
            return f"warm node worker: did not start (exit {process.returncode}, see {log})"
        if request(path, {"op": "ping"}) is not None:
            took = time.perf_counter() - started
            return f"warm node worker: ready in {took:.1f} s (pid {process.pid}, {path})"
        time.sleep(0.1)
    return f"warm node worker: not ready after {READY_TIMEOUT_SECONDS:.0f} s; nodes run inline"


def stop_worker(config: MillpondConfig) -> bool:
    """Ask the stack's worker on this host to stop; False when none was running."""
    return request(socket_path(config.state), {"op": "stop"}) is not None
