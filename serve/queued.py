"""The ledger row of a run `POST /runs` asks for, written before anything can fail.

The run is `queued` (trigger `api`) as soon as the request is accepted, before the flow run
or the `millpond run` process that will run it exists, so `GET /runs/{id}` answers at once
and a run that never starts is still in the ledger: closed `failed` with the reason when
starting it fails here or its process exits before it opened the run (`watch`), by the run's
own process when its config cannot be read (millpond.runtime.unstartable), or `abandoned` by
the next run when nothing ever picked it up (millpond.runtime.lifecycle).

A run closed failed here is told to the `notify:` webhooks like any failed run, once: only
the writer that actually closed the queued row tells them (a run process that recorded its
own failure first has told them already), with the ledger's reason and duration.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import psycopg

from millpond.core.config import MillpondConfig
from millpond.core.logs import logger
from millpond.core.masking import mask
from millpond.metadata import queries
from millpond.metadata.db import CONNECT_TIMEOUT_S
from millpond.metadata.records import QueuedRunFailed, RunNotified, RunQueued, commit
from millpond.notify import notify_run


def _request_ledger_url() -> str:
    """The ledger of this request's connection, taken now: when a background thread uses
    it later, the service's settings may be another stack's (or gone), and resolving them
    then could open another ledger (an embedded one started for the wrong folder)."""
    from millpond.serve.deps import ledger_pool

    conninfo = ledger_pool().conninfo
    return str(conninfo() if callable(conninfo) else conninfo)  # a pool may take a callable


class QueuedRun:
    """Called with the new run id (and later its flow run id) once the run is accepted."""

    def __init__(
        self,
        conn: psycopg.Connection,
        target: str | None,
        config: MillpondConfig | None = None,
        retry_of: str | None = None,
    ) -> None:
        self.conn, self.target, self.config, self.retry_of = conn, target, config, retry_of
        self.run_id: str | None = None

    def __call__(self, run_id: str, flow_run_id: str | None = None) -> None:
        self.run_id = run_id
        commit(
            self.conn,
            RunQueued(run_id, "prefect", "api", self.target, flow_run_id, retry_of=self.retry_of),
        )

    def fail(
        self, reason: str, conn: psycopg.Connection | None = None, *, wait: bool = True
    ) -> bool:
        """Close the run as failed if it is still queued: it could not be started. Returns
        whether this call closed it; then the webhooks are told (in the background when not
        `wait`, so that a slow webhook does not hold the caller's answer)."""
        if self.run_id is None:
            return False
        conn = conn or self.conn
        message = mask(reason)
        if not commit(conn, QueuedRunFailed(self.run_id, message)):
            return False  # it opened (or closed) meanwhile: its own process tells the hooks
        if self.config is not None and self.config.notify:
            run = queries.get_run(conn, self.run_id)
            duration_ms = None if run is None else run["duration_ms"]
            if wait:
                self._tell(message, duration_ms, conn)
            else:
                url = _request_ledger_url()
                threading.Thread(
                    target=self._tell_on,
                    args=(url, message, duration_ms),
                    name=f"notify-{self.run_id}",
                    daemon=True,
                ).start()
        return True

    def _tell(self, message: str, duration_ms: int | None, conn: psycopg.Connection) -> None:
        """The webhooks, told the run failed; what they said kept in the run's summary."""
        assert self.config is not None and self.run_id is not None
        told = notify_run(
            self.config, self.run_id, "failed", message, [], rows=0, duration_ms=duration_ms
        )
        if told:
            commit(conn, RunNotified(self.run_id, told["notifications"]))

    def _tell_on(self, url: str, message: str, duration_ms: int | None) -> None:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as c:
                self._tell(message, duration_ms, c)
        except Exception as exc:  # never raised in a thread nobody waits for
            logger.warning(f"run {self.run_id}: the webhooks' outcome not recorded ({exc})")

    def watch(self, process: subprocess.Popen[bytes], log: Path) -> None:
        """Close the run as failed, in the background, if its process exits before it opened
        the run (an option it refused, a crash at import); the run's own failures it records
        itself."""
        url = _request_ledger_url()

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
