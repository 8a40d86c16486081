"""The deployment `millpond ui` serves, and the background process serving it.

`serve_forever` runs in that process: Prefect's runner registers the deployment (the project's
flow on the `schedule` of millpond.yml, started from the UI or the API with parameters), polls
for its flow runs and runs each in a subprocess. `ensure_served` starts the process detached
(pid in `<state>/prefect/deployment.pid`, log in `<state>/logs/prefect-deployment.log`) or
reuses the one that runs; `stop_served` stops it (`millpond down`). The flow itself comes from
the composition root, which knows how to run a whole millpond run; flows/ only serves it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from millpond.core.config import MillpondConfig
from millpond.core.locks import file_lock
from millpond.core.logs import logger
from millpond.flows.prefect_api import deployment_name, read_deployment

# What identifies the serving process in /proc/<pid>/cmdline (a stale pid file is ignored).
SERVE_COMMAND = "serve-deployment"


def serve_forever(flow: Any, config: MillpondConfig) -> None:
    """Serve `flow` as the project's deployment until SIGTERM; blocks.

    The schedule is paused when serving stops (no run could start anyway) and resumed by the
    next `millpond ui`. Runs execute the in-memory flow in a subprocess, so the task runner and
    the name given here are the ones a run gets.
    """
    from prefect.deployments.runner import EntrypointType
    from prefect.task_runners import ThreadPoolTaskRunner

    flow_name, name = deployment_name(config)
    served = flow.with_options(
        name=flow_name,
        task_runner=ThreadPoolTaskRunner(max_workers=config.prefect.concurrency),
    )
    served.serve(
        name=name,
        cron=config.schedule,
        paused=False,
        pause_on_shutdown=True,
        tags=["millpond"],
        description=f"A whole millpond run of {config.project} (millpond.yml: schedule "
        f"{config.schedule or 'none'}); parameters select, exclude, full_refresh, target.",
        entrypoint_type=EntrypointType.MODULE_PATH,
        print_starting_message=True,
    )


def _pid_file(config: MillpondConfig) -> Path:
    return config.state / "prefect" / "deployment.pid"


def _serving_pid(config: MillpondConfig) -> int | None:
    """The pid of our serving process while it lives."""
    try:
        pid = int(_pid_file(config).read_text().strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if SERVE_COMMAND.encode() in command else None


def ensure_served(
    config: MillpondConfig, command: list[str], api: str, wait_seconds: float = 120.0
) -> tuple[int, bool]:
    """Start `command` (which calls `serve_forever`) in the background unless it runs already;
    returns (pid, started) once the deployment is in the API and its schedule is active."""
    with file_lock(config.locks_dir / "prefect-deployment.lock", "Prefect deployment start"):
        pid = _serving_pid(config)
        if pid is not None:
            return pid, False
        _pid_file(config).parent.mkdir(parents=True, exist_ok=True)
        config.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = config.logs_dir / "prefect-deployment.log"
        started_at = time.time()
        with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                command,
                cwd=str(config.root),
                env=dict(os.environ, PREFECT_API_URL=api),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _pid_file(config).write_text(str(process.pid))
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            if process.poll() is not None:
                _pid_file(config).unlink(missing_ok=True)
                raise RuntimeError(
                    f"serving the deployment failed (exit {process.returncode}); see {log_path}"
                )
            if _ready(read_deployment(config, api, timeout=2.0), started_at):
                return process.pid, True
            time.sleep(0.5)
        stop_served(config)
        raise RuntimeError(f"the deployment was not served within {wait_seconds:.0f} s")


def _ready(deployment: dict[str, Any] | None, since: float) -> bool:
    """Registered by this process (updated after it started), not paused, and polled by it
    (`READY`), so `POST /runs` goes through it from now on."""
    if not deployment or deployment.get("paused") or deployment.get("status") != "READY":
        return False
    from datetime import datetime

    updated = datetime.fromisoformat(str(deployment.get("updated")).replace("Z", "+00:00"))
    return updated.timestamp() >= since - 1.0


def stop_served(config: MillpondConfig) -> bool:
    """Stop the serving process (and a run it is running); False if none was running."""
    pid = _serving_pid(config)
    _pid_file(config).unlink(missing_ok=True)
    if pid is None:
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    for _ in range(100):  # on SIGTERM the runner pauses the schedule, then exits
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            logger.info("stopped serving the deployment")
            return True
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)
    return True
