"""The warm node worker: a fork server for `millpond run-node` (see millpond.cli.warm).

`python -m millpond.cli.warm.server SOCKET --idle SECONDS --state DIR` (started by
`millpond run-start`, millpond.cli.warm.control) imports what nodes need (and decodes the
stack's saved dbt manifest once), then serves one loop in one thread:
accept a request, fork, send the child's pid, and send its exit status when it ends. The
child takes over the client's stdin/stdout/stderr, working folder and environment and runs
the `millpond` command line it was sent, exactly as the inline command would (it builds the
CLI, its consoles and its log sinks itself; only modules are shared). The worker refuses
(the client then runs inline) a client of another Python interpreter, and any request once
millpond's code changed under it: then it stops, as it does on `stop`, SIGTERM, or after
`--idle` seconds with nothing to do.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import inspect
import os
import selectors
import signal
import socket
import struct
import sys
import sysconfig
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from millpond.cli.warm import client
from millpond.cli.warm.wire import private_folder, recv_request, send_reply

# What a node's process imports, heaviest first; never Prefect (no run-node needs it) and
# never the CLI itself (its consoles read the terminal and environment they are built in).
PRELOAD = (
    "dbt.cli.main",
    "dbt.task.build",
    "dbt.task.compile",
    "dbt.parser.sql",
    "dbt.graph.thread_pool",
    "dbt.adapters.duckdb",
    "dbt.adapters.duckdb.environments.local",
    "dbt.adapters.postgres",
    "multiprocessing.pool",
    "duckdb",
    "pyarrow",
    "pyarrow.parquet",
    "psycopg",
    "typer",
    "rich.console",
    "millpond.core.config_loading",
    "millpond.runtime.context",
    "millpond.runtime.execute",
    "millpond.nodes.dbt.runner",
    "millpond.nodes.dbt.select",
    "millpond.runtime.selection",
)
# dbt validates these against JSON schemas it builds on first use and caches per class:
# about a second per process, paid here once instead of in every child.
DBT_SCHEMAS = (
    "dbt.contracts.project:Project",
    "dbt.contracts.project:ProjectFlags",
    "dbt.contracts.project:Configuration",
    "dbt.contracts.project:PackageConfig",
    "dbt.contracts.project:ProfileConfig",
    "dbt.contracts.selection:SelectorFile",
    "dbt.task.test:TestResultData",
    "dbt.adapters.duckdb.credentials:DuckDBCredentials",
    "dbt.adapters.postgres.connections:PostgresCredentials",
)
# The first-party packages whose code a served node runs.
CODE_PACKAGES = ("millpond", "millpond.ingest", "millpond.metadata")
REQUEST_TIMEOUT_SECONDS = 5.0
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def preload() -> None:
    """Import what nodes need and register the kinds, starting no thread (a fork copies only
    the forking thread: a lock another thread held would stay locked in every child)."""
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            logger.info(f"not preloaded: {name} ({exc})")
    for ref in DBT_SCHEMAS:
        module, name = ref.split(":")
        try:
            getattr(importlib.import_module(module), name).json_schema()
        except (ImportError, AttributeError) as exc:
            logger.info(f"no schema built for {ref} ({exc})")
    from millpond.core.registry import load_plugins

    load_plugins()
    # dbt's behavior flags call inspect.stack(), whose first call maps every loaded module to
    # its file (thousands of realpath calls): done here, each child maps only its new ones.
    inspect.getmodule(inspect.currentframe())
    if threading.active_count() != 1:
        names = [t.name for t in threading.enumerate()]
        logger.warning(f"threads running before fork (children may deadlock): {names}")


def code_key() -> dict[str, Any]:
    """What the served code is: millpond's version, the newest source file of its packages,
    the installed packages (the site-packages folder changes with every install) and the
    interpreter. A worker whose key changed since it started no longer serves."""
    import millpond

    newest = 0.0
    for name in CODE_PACKAGES:
        module = sys.modules.get(name) or importlib.import_module(name)
        for folder in {Path(p) for p in module.__path__}:
            for path in folder.rglob("*.py"):
                with contextlib.suppress(OSError):
                    newest = max(newest, path.stat().st_mtime)
    site = sysconfig.get_paths()["purelib"]
    return {
        "version": millpond.__version__,
        "source_mtime": newest,
        "site_mtime": os.stat(site).st_mtime,
        "python": [sys.prefix, sys.version],
    }


@dataclass
class Job:
    pid: int
    conn: socket.socket
    what: str
    started: float


class Worker:
    """The accept-fork-wait loop; single-threaded, so forking is safe at any moment."""

    def __init__(self, path: Path, idle_seconds: float) -> None:
        self.path, self.idle_seconds = path, idle_seconds
        self.jobs: dict[int, Job] = {}
        self.stopping = False
        self.key = code_key()
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        self.listener = self._bind()

    def _bind(self) -> socket.socket:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not private_folder(self.path):
            raise SystemExit(f"{self.path.parent} must be private to this user")
        if client.request(self.path, {"op": "ping"}, timeout=2) is not None:
            raise SystemExit(f"a warm node worker already serves {self.path}")
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # stale: nobody answered
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        umask = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(umask)
        sock.listen(64)
        self.inode = os.stat(self.path).st_ino
        return sock

    def serve(self) -> None:
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self.wake_w)
        for sig in (signal.SIGCHLD, *_STOP_SIGNALS):
            signal.signal(sig, lambda signum, frame: None)  # the wakeup fd says which
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "signal")
        logger.info(f"serving {self.path} (pid {os.getpid()}, idle {self.idle_seconds:.0f} s)")
        last = time.monotonic()
        try:
            while self.jobs or not self.stopping:
                timeout = None if self.jobs else last + self.idle_seconds - time.monotonic()
                if timeout is not None and timeout <= 0:
                    logger.info(f"idle for {self.idle_seconds:.0f} s: exiting")
                    break
                for key, _ in self.selector.select(timeout):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "signal":
                        self._signals()
                    else:
                        self._readable(key.data)
                    last = time.monotonic()
        finally:
            self._unlink()
            logger.info("stopped")

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        try:
            conn.settimeout(REQUEST_TIMEOUT_SECONDS)
            _check_peer(conn)
            message, fds = recv_request(conn)
        except (OSError, ValueError) as exc:
            logger.warning(f"bad request: {exc}")
            conn.close()
            return
        try:
            self._handle(conn, message, fds)
        finally:
            for fd in fds:
                os.close(fd)

    def _handle(self, conn: socket.socket, message: dict[str, Any], fds: list[int]) -> None:
        op = message.get("op")
        if op != "run":
            if op == "stop":
                self.stop("asked to stop")
            with contextlib.suppress(OSError):
                send_reply(conn, {"stopping" if op == "stop" else "pong": os.getpid()})
            conn.close()
            return
        why = self._refusal(message, fds)
        if why:
            logger.info(f"refused {message.get('argv')}: {why}")
            with contextlib.suppress(OSError):
                send_reply(conn, {"refused": why})
            conn.close()
            return
        pid = self._fork(conn, message, fds)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also in the child: whichever runs first
        argv = message["argv"]
        job = Job(pid, conn, " ".join(argv[:2]), time.monotonic())
        self.jobs[pid] = job
        logger.info(f"{job.what}: pid {pid}")
        try:
            conn.settimeout(None)
            send_reply(conn, {"pid": pid})
            self.selector.register(conn, selectors.EVENT_READ, job)
        except OSError:
            self._kill(job)

    def _refusal(self, message: dict[str, Any], fds: list[int]) -> str | None:
        if self.stopping:
            return "the worker is stopping"
        if len(fds) != 3 or not isinstance(message.get("argv"), list):
            return "malformed request"
        if not os.path.isdir(str(message.get("cwd"))):
            return f"no folder {message.get('cwd')} here"
        if message.get("python") != [sys.prefix, sys.version]:
            return f"another Python ({message.get('python')}, not {[sys.prefix, sys.version]})"
        if code_key() != self.key:
            self.stop("millpond's code or packages changed since it started")
            return "millpond's code or installed packages changed since the worker started"
        return None

    def _fork(self, conn: socket.socket, message: dict[str, Any], fds: list[int]) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            return pid
        code = 1
        try:
            self._become_child(conn, fds)
            code = run_command(message)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)

    def _become_child(self, conn: socket.socket, fds: list[int]) -> None:
        """Drop the worker's part of the process: its signals, sockets and descriptors."""
        os.setpgid(0, 0)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.selector.close()
        for sock in [self.listener, conn, *(job.conn for job in self.jobs.values())]:
            sock.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        for target, fd in enumerate(fds):
            if fd != target:
                os.dup2(fd, target)
                os.close(fd)
        fds.clear()
        client.NOTE = f"served by the warm node worker (pid {os.getppid()})"

    def _signals(self) -> None:
        with contextlib.suppress(BlockingIOError):
            received = os.read(self.wake_r, 512)
            if any(s in received for s in _STOP_SIGNALS):
                self.stop("signalled")
        self._reap()

    def _reap(self) -> None:
        while self.jobs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job = self.jobs.pop(pid, None)
            if job is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            logger.info(
                f"{job.what}: pid {pid} exit {code} in {time.monotonic() - job.started:.1f} s"
            )
            self._close(job)
            with contextlib.suppress(OSError):
                send_reply(job.conn, {"exit": code})
            job.conn.close()

    def _readable(self, job: Job) -> None:
        """A client's end became readable: it closed (killed, even by SIGKILL), since clients
        send nothing after their request."""
        if job.pid not in self.jobs:
            return  # reaped in this same round
        with contextlib.suppress(OSError):
            if job.conn.recv(1):
                return
        self._kill(job)

    def _kill(self, job: Job) -> None:
        """The client is gone: so goes its child (and what the child started). Its pid is
        not reaped yet, so the group cannot be another process's."""
        logger.warning(f"{job.what}: client gone, killing pid {job.pid}")
        with contextlib.suppress(OSError):
            os.killpg(job.pid, signal.SIGKILL)
        self._close(job)

    def _close(self, job: Job) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(job.conn)

    def stop(self, why: str) -> None:
        """Take no new request (the socket goes at once); running children finish."""
        if self.stopping:
            return
        logger.info(f"stopping: {why}")
        self.stopping = True
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self.listener)
        self.listener.close()
        self._unlink()

    def _unlink(self) -> None:
        """Remove the socket if it is still this worker's (not a newer worker's)."""
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self.inode:
                self.path.unlink()


def _check_peer(conn: socket.socket) -> None:
    """Only this user's processes are served (the socket's mode says so too)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return
    _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, option, 12))
    if uid != os.getuid():
        raise PermissionError(f"a process of uid {uid} is not served")


def run_command(message: dict[str, Any]) -> int:
    """In the child: the sent command line with the client's folder and environment, and the
    exit status an inline `millpond` would end with."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        setattr(sys, name, _reopen(fd, name))
    os.chdir(message["cwd"])
    os.environ.clear()
    os.environ.update(message["env"])
    sys.argv = ["millpond", *message["argv"]]
    from millpond.cli.main import app

    try:
        app(args=message["argv"], prog_name="millpond")
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        traceback.print_exc()
        code = 1
    # What an interpreter does on its way out: wait for non-daemon threads, run exit hooks.
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # no public way; os._exit follows, which would skip them
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return code


def _reopen(fd: int, name: str) -> Any:
    """A standard stream over the received descriptor, buffered as Python buffers it for
    that kind of file (line-buffered on a terminal, stderr always)."""
    mode = "r" if fd == 0 else "w"
    line = name == "stderr" or os.isatty(fd)
    errors = "backslashreplace" if name == "stderr" else None
    return open(fd, mode, buffering=1 if line and fd else -1, errors=errors, closefd=False)


def _exit_code(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def main() -> None:
    parser = argparse.ArgumentParser(description="millpond's warm node worker")
    parser.add_argument("socket", type=Path)
    parser.add_argument("--idle", type=float, default=600.0, help="exit after so long idle")
    parser.add_argument("--state", type=Path, help="the stack's state folder")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, format="{time:YYYY-MM-DD HH:mm:ss} {level: <7} {message}")
    started = time.perf_counter()
    preload()
    if args.state:
        from millpond.nodes.dbt import manifest_cache

        manifest_cache.warm(args.state / "dbt" / "target")
    worker = Worker(args.socket, args.idle)
    logger.info(f"preloaded in {time.perf_counter() - started:.1f} s")
    worker.serve()


if __name__ == "__main__":
    main()
