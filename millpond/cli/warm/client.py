"""`millpond run-node` through the warm node worker, when one serves this stack on this host.

This runs before the CLI is imported, so it imports only the standard library and PyYAML
(millpond.core.config_file); `python -X importtime` of a served run-node shows no dbt, DuckDB,
Prefect or pydantic. Whenever the worker cannot serve, `run_in_worker` returns None before
anything ran and the command runs inline, as without a worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from millpond.cli.warm.wire import (
    private_folder,
    read_reply,
    send_request,
    socket_path,
)
from millpond.core.config_file import find_config, state_dir

# Why this process runs its node inline, or which worker serves it: `millpond run-node` logs
# it at debug level once its run log is open.
NOTE: str | None = None
# How long a killed child gets to end after the client passed the signal on, before SIGKILL.
KILL_GRACE_SECONDS = 10.0
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class _Signalled(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def run_in_worker(argv: list[str]) -> int | None:
    """Run `millpond <argv>` (a run-node) in the worker; its exit status, or None when the
    worker is absent, stale or refuses (then nothing ran: run inline)."""
    global NOTE
    path, NOTE = find_worker(argv)
    if path is None:
        return None
    handlers = {sig: signal.signal(sig, _raise) for sig in _SIGNALS}
    try:
        return _run(path, argv)
    except _Signalled as exc:  # before the worker forked: nothing runs
        return 128 + exc.signum
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def find_worker(argv: list[str]) -> tuple[Path | None, str]:
    """The socket of this stack's worker, or None and why not."""
    try:
        config_file = find_config(_option(argv, "--config", "-c"))
        path = socket_path(state_dir(config_file, dict(os.environ)))
    except Exception as exc:  # the inline run says what is wrong with the config
        return None, f"no state folder ({type(exc).__name__}: {exc})"
    if not path.exists():
        return None, f"no warm node worker ({path} absent)"
    if not private_folder(path):
        return None, f"{path.parent} is not private to this user: not using its socket"
    return path, str(path)


def _option(argv: list[str], long: str, short: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg in (long, short) and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(long + "="):
            return arg.split("=", 1)[1]
    return None


def _run(path: Path, argv: list[str]) -> int | None:
    global NOTE
    try:
        sock = connect(path)
    except OSError as exc:
        NOTE = f"warm node worker unreachable ({exc})"
        return None
    with sock:
        fds, opened = _stdio()
        request = {
            "op": "run",
            "argv": argv,
            "env": dict(os.environ),
            "cwd": os.getcwd(),
            "python": [sys.prefix, sys.version],
        }
        try:
            send_request(sock, request, fds)
            reader = sock.makefile("rb")
            first = read_reply(reader)
        except OSError as exc:
            NOTE = f"warm node worker broken ({exc})"
            return None
        finally:
            for fd in opened:
                os.close(fd)
        if not first or "pid" not in first:
            NOTE = f"warm node worker refused: {(first or {}).get('refused', 'no answer')}"
            return None
        return _wait(sock, reader, int(first["pid"]))


def connect(path: Path) -> socket.socket:
    """A connection to the worker; a socket nobody listens on any more is removed."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except ConnectionRefusedError:
        sock.close()
        with contextlib.suppress(OSError):
            path.unlink()
        raise ConnectionRefusedError(f"stale socket {path} removed") from None
    except OSError:
        sock.close()
        raise
    return sock


def request(path: Path, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any] | None:
    """One control request (ping, stop) and its reply; None when no worker answers."""
    try:
        with connect(path) as sock:
            sock.settimeout(timeout)
            send_request(sock, message, [])
            return read_reply(sock.makefile("rb"))
    except (OSError, ValueError):
        return None


def _stdio() -> tuple[list[int], list[int]]:
    """Descriptors 0, 1 and 2 to hand over, a closed one replaced by /dev/null; and those
    replacements, for the caller to close."""
    fds: list[int] = []
    opened: list[int] = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            fds.append(null)
            opened.append(null)
    return fds, opened


def _wait(sock: socket.socket, reader: Any, pid: int) -> int:
    """The child's exit status; a signal to this process is passed on to the child."""
    try:
        reply = read_reply(reader)
    except _Signalled as exc:
        _kill(pid, exc.signum)
        sock.settimeout(KILL_GRACE_SECONDS)
        try:
            ended = read_reply(reader) is not None
        except (OSError, ValueError, _Signalled):
            ended = False
        if not ended:
            _kill(pid, signal.SIGKILL)
        return 128 + exc.signum
    if reply is None or "exit" not in reply:
        _kill(pid, signal.SIGKILL)
        sys.stderr.write(f"millpond: the warm node worker went away while pid {pid} ran\n")
        return 1
    code = int(reply["exit"])
    return code if code >= 0 else 128 - code


def _kill(pid: int, signum: int) -> None:
    """Signal the child's process group (it leads one), so what it started goes too."""
    with contextlib.suppress(OSError):
        os.killpg(pid, signum)


def _raise(signum: int, frame: FrameType | None) -> None:
    raise _Signalled(signum)
