"""A local Prefect server for `just run` and `just ui`, started once and reused.

Without a server, every Prefect flow run starts a temporary one (6-14 s each time) and the run
is gone from any UI afterwards. So millpond starts `prefect server start` in the background on
first use (state under `<state>/prefect`, its log under `<state>/logs/prefect-server.log`),
reuses it while it answers, and `millpond down` stops it.

The Prefect UI asks its API at the URL the server was started with, which defaults to port 4200
whatever `--port` says: on another port the UI stays blank ("Can't connect to Server API"). So
the server is started with its API host, port and UI API URL all set to the configured address.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from millpond.core.config import MillpondConfig
from millpond.core.locks import file_lock
from millpond.core.logs import logger
from millpond.flows.prefect_api import api_url, ui_url


def healthy(api: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def _pid_file(config: MillpondConfig) -> Path:
    return config.state / "prefect" / "server.pid"


def ensure_server(config: MillpondConfig, wait_seconds: float = 300.0) -> str:
    """Return a healthy Prefect API URL, starting the local server if nothing answers."""
    api = api_url(config)
    if healthy(api):
        _warn_if_ui_elsewhere(api)
        return api
    if config.prefect.api_url or os.environ.get("PREFECT_API_URL"):
        raise RuntimeError(f"Prefect API at {api} does not answer")
    # Two first runs at once: one starts the server, the other waits and then reuses it.
    with file_lock(config.locks_dir / "prefect-server.lock", "Prefect server start"):
        if healthy(api):
            return api
        return _start_server(config, api, wait_seconds)


def _start_server(config: MillpondConfig, api: str, wait_seconds: float) -> str:
    """Start `prefect server start` detached; its pid is recorded once it answers."""
    home = config.state / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    config.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = config.logs_dir / "prefect-server.log"
    log = log_path.open("ab")
    env = dict(
        os.environ,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_API_HOST=config.prefect.host,
        PREFECT_SERVER_API_PORT=str(config.prefect.port),
        PREFECT_UI_API_URL=api,
    )
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_SERVER_UI_API_URL", None)  # would win over PREFECT_UI_API_URL
    prefect = Path(sys.executable).with_name("prefect")
    command = [
        str(prefect),
        "server",
        "start",
        "--host",
        config.prefect.host,
        "--port",
        str(config.prefect.port),
    ]
    with log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    logger.info(f"starting the Prefect server at {ui_url(api)} (log: {log_path})")
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the Prefect server exited with {process.returncode}; see {log_path}"
            )
        if healthy(api, timeout=1.0):
            _pid_file(config).write_text(str(process.pid))  # only a server that came up
            return api
        time.sleep(0.5)
    process.terminate()
    raise RuntimeError(f"the Prefect server did not answer within {wait_seconds:.0f} s")


def ui_api_url(api: str) -> str | None:
    """The API URL the server's UI calls (its `/ui-settings`); None if it does not say."""
    try:
        response = httpx.get(f"{ui_url(api)}/ui-settings", timeout=2.0)
        return str(response.json().get("api_url") or "") or None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None


def _warn_if_ui_elsewhere(api: str) -> None:
    """A reused server started by something else may have a UI that looks at another port."""
    seen = ui_api_url(api)
    if seen and seen.rstrip("/") != api.rstrip("/"):
        logger.warning(
            f"the Prefect server at {ui_url(api)} was started with its UI calling {seen}: the UI "
            "stays blank; stop it (`just down` if millpond started it) and let millpond start it"
        )


def _is_prefect_server(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(part.endswith(b"prefect") for part in command) and b"server" in command


def stop_server(config: MillpondConfig) -> bool:
    """Stop the server `ensure_server` started; False if none was running."""
    pid_file = _pid_file(config)
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().strip())
    pid_file.unlink()
    if not _is_prefect_server(pid):  # stale pid file: the number may belong to anything now
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    for _ in range(50):
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)
    return True
