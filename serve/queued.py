"""The ledger row of a run `POST /runs` asks for, written before anything can fail.

The run is `queued` (trigger `api`) as soon as the request is accepted, before the flow run
or the `millpond run` process that will run it exists, so `GET /runs/{id}` answers at once
and a run that never starts is still in the ledger: closed `failed` with the reason when
starting it fails here or its process exits before it opened the run (`watch`), by the run's
own process when its config cannot be read (millpond.runtime.unstartable), or `abandoned` by
the next run when nothing ever picked it up (millpond.runtime.lifecycle).
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import psycopg

from millpond.core.logs import logger
from millpond.core.masking import mask
from millpond.metadata.db import CONNECT_TIMEOUT_S
from millpond.metadata.records import QueuedRunFailed, RunQueued, commit


class QueuedRun:
    """Called with the new run id (and later its flow run id) once the run is accepted."""

    def __init__(self, conn: psycopg.Connection, target: str | None) -> None:
        self.conn, self.target = conn, target
        self.run_id: str | None = None

    def __call__(self, run_id: str, flow_run_id: str | None = None) -> None:
        self.run_id = run_id
        commit(self.conn, RunQueued(run_id, "prefect", "api", self.target, flow_run_id))

    def fail(self, reason: str, conn: psycopg.Connection | None = None) -> None:
        """Close the run as failed if it is still queued: it could not be started."""
        if self.run_id is not None:
            commit(conn or self.conn, QueuedRunFailed(self.run_id, mask(reason)))

    def watch(self, process: subprocess.Popen[bytes], log: Path) -> None:
        """Close the run as failed, in the background, if its process exits before it opened
        the run (an option it refused, a crash at import); the run's own failures it records
        itself."""

        # The ledger's address is taken now, in the request: when the process exits, the
        # service's settings may be another stack's (or gone), and resolving them then could
        # open another ledger (an embedded one started for the wrong folder).
        from millpond.serve.deps import ledger_pool

        conninfo = ledger_pool().conninfo  # the ledger of this request's connection
        url = conninfo() if callable(conninfo) else conninfo  # a pool may take a callable

        def wait() -> None:
            code = process.wait()
            try:
                with psycopg.connect(
                    url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
                ) as conn:
                    self.fail(
                        f"the run process exited with {code} before it began; see {log}", conn
                    )
            except Exception as exc:  # the ledger is gone: the next run abandons the row
                logger.warning(
                    f"run {self.run_id}: its process exited with {code} before it began, and "
                    f"the ledger could not be told ({mask(str(exc))}); the next run start "
                    "closes the queued row"
                )

        threading.Thread(target=wait, name=f"watch-{self.run_id}", daemon=True).start()
