"""A run's lease, and the closing of runs that died without closing themselves.

A run that is killed (SIGKILL, power loss, the OOM killer) cannot write its own end, so every
run holds a lease in its ledger row: `host`, `pid` and `heartbeat_at`. The next run that starts
(`millpond run`, or an Airflow DAG run's open task) closes every `running` run whose lease is
gone as `abandoned`, with its running node attempts, and marks its Prefect flow run crashed.

Two kinds of lease:
- a process lease (a `millpond run`, one process for the whole run): host and pid, and a
  heartbeat refreshed every `HEARTBEAT_SECONDS` by a daemon thread. It is gone when the pid no
  longer runs on this host, or (seen from another host, or a pid reused) when the heartbeat is
  older than `PROCESS_EXPIRY_SECONDS`;
- a task lease (an Airflow run: no process lives for the whole run, so no pid): the open task
  claims it, and every `run-node` task refreshes the heartbeat when it starts and while it
  runs. Between tasks (queued in a pool, waiting for a retry) nothing beats, so it expires only
  after the longest node timeout of the config (`task_lease_expiry`) without a heartbeat. The
  DAG's close task (`all_done`) closes the run with its real status long before that.

A run is opened in the ledger before the slow parts of its start (Prefect server, dbt parse),
so a run that dies while starting leaves a row that the next start closes. A run asked for
through `POST /runs`, the schedule or the Prefect UI is `queued` before that, from the moment
it is asked for (`RunQueued`): a queued run that no process claimed within
`QUEUED_EXPIRY_SECONDS` (its flow run never started) is abandoned the same way, and one that
cannot start is closed `failed` with the reason (`fail_start`), webhooks included.

`close_run` is the one way a run is closed with an outcome: it measures the run's duration
once, from the ledger's start to the end it records, and hands the same rows and duration to
the webhooks and the ledger's summary.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from millpond.core.config import MillpondConfig
from millpond.core.logs import logger
from millpond.core.masking import mask
from millpond.metadata import reads
from millpond.metadata.ledger import Ledger, LedgerUnavailableError
from millpond.metadata.records import (
    LeaseClaimed,
    LeaseHeartbeat,
    RunAbandoned,
    RunFinished,
    RunQueued,
    RunStarted,
)
from millpond.notify import notify_run
from millpond.runtime.context import RunContext

HEARTBEAT_SECONDS = 15.0
PROCESS_EXPIRY_SECONDS = 300.0
# How long a run may stay queued without a process claiming it (Prefect's runner polls every
# few seconds and a flow run starts in well under a minute when the deployment is served).
QUEUED_EXPIRY_SECONDS = 300.0
# Airflow run types as the ledger records them: `scheduled` reads as millpond's own `schedule`.
AIRFLOW_TRIGGERS = {"scheduled": "schedule", "manual": "manual", "backfill": "backfill"}


def this_host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """True if a process with this pid runs here (a zombie, killed but not reaped, is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 - one short read
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def task_lease_expiry(config: MillpondConfig) -> float:
    """How long an Airflow run may go without a heartbeat: the longest node timeout."""
    timeouts = [config.dbt.policy.timeout_seconds]
    for source in config.sources.values():
        timeouts += [source.extract.timeout_seconds, source.load.timeout_seconds]
    return max(timeouts)


def lease_gone(run: dict[str, Any], host: str, now: datetime, task_expiry: float) -> str | None:
    """Why a `running` run's lease is gone (it died), or None while it may still be alive."""
    pid, beat = run.get("pid"), run.get("heartbeat_at") or run.get("started_at")
    if pid is not None and run.get("host") == host and not pid_alive(pid):
        return f"its process (pid {pid} on {host}) is gone"
    if pid is None and run.get("status") == "queued":
        if beat is not None and now - beat > timedelta(seconds=QUEUED_EXPIRY_SECONDS):
            return (
                f"queued at {beat:%Y-%m-%d %H:%M:%S %Z} and never started: no process picked "
                f"it up within {QUEUED_EXPIRY_SECONDS:.0f} s (is the deployment served?)"
            )
        return None
    expiry = PROCESS_EXPIRY_SECONDS if pid is not None else task_expiry
    if beat is not None and now - beat > timedelta(seconds=expiry):
        return f"no heartbeat since {beat:%Y-%m-%d %H:%M:%S %Z} (lease {expiry:.0f} s)"
    return None


def close_dead_runs(ctx: RunContext) -> list[dict[str, Any]]:
    """Close every other `running` run whose lease is gone as `abandoned`; returns them."""
    try:
        running = reads.running_runs(ctx.ledger)
    except LedgerUnavailableError:
        return []  # the ledger is buffering: nothing to compare leases with
    host, now, expiry = this_host(), datetime.now(UTC), task_lease_expiry(ctx.config)
    closed = []
    for run in running:
        reason = None if run["run_id"] == ctx.run_id else lease_gone(run, host, now, expiry)
        if reason:
            ctx.ledger.write(RunAbandoned(run["run_id"], f"abandoned: {reason}"))
            logger.warning(f"closed run {run['run_id']} as abandoned: {reason}")
            closed.append(run)
    return closed


def crash_flow_runs(runs: list[dict[str, Any]]) -> None:
    """Mark the Prefect flow runs of abandoned runs crashed; best effort, only when a Prefect
    API is configured (never starts a temporary server)."""
    flow_runs = [r for r in runs if r.get("flow_run_id")]
    if not flow_runs or not os.environ.get("PREFECT_API_URL"):
        return
    try:
        from prefect.client.orchestration import get_client
        from prefect.states import Crashed

        with get_client(sync_client=True) as client:
            for run in flow_runs:
                client.set_flow_run_state(
                    run["flow_run_id"],
                    Crashed(message=f"millpond run {run['run_id']} abandoned: it died"),
                    force=True,
                )
    except Exception as exc:  # the ledger is right already; the UI is a courtesy
        logger.warning(f"could not mark abandoned flow runs crashed: {mask(str(exc))}")


class Heartbeat:
    """A daemon thread refreshing a run's lease until stopped or the run is closed."""

    def __init__(self, ledger: Ledger, run_id: str, interval: float = HEARTBEAT_SECONDS) -> None:
        self.ledger, self.run_id, self.interval = ledger, run_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{run_id}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self.ledger.try_write(LeaseHeartbeat(self.run_id)) is False:
                    return  # the run was closed: nothing left to keep alive
            except Exception as exc:  # a heartbeat must never take the run down
                logger.debug(f"heartbeat failed: {exc}")


def keep_alive(ctx: RunContext) -> Heartbeat:
    """Beat the run's lease now and every HEARTBEAT_SECONDS while this process works on it
    (once per context: a second call returns the same heartbeat)."""

    def start() -> Heartbeat:
        ctx.ledger.try_write(LeaseHeartbeat(ctx.run_id))
        return Heartbeat(ctx.ledger, ctx.run_id).start()

    return ctx.resource("heartbeat", start)


def open_run(ctx: RunContext, trigger: str | None, *, process: bool = True) -> list[dict]:
    """Open the run in the ledger with its lease, after closing the runs that died; returns
    those (for `crash_flow_runs` once a Prefect API is known). Idempotent per run.

    `process=False` is the task lease of an orchestrator whose tasks are separate short
    processes (Airflow): no pid, the heartbeat alone says the run is alive."""
    abandoned = close_dead_runs(ctx)
    ctx.ledger.write(RunStarted(ctx.run_id, ctx.orchestrator, trigger, ctx.config.target_name))
    ctx.ledger.write(LeaseClaimed(ctx.run_id, this_host(), os.getpid() if process else None))
    if process:
        keep_alive(ctx)
    return abandoned


def queue_run(ctx: RunContext, trigger: str | None) -> None:
    """Record the run as asked for (`queued`), with this process's lease, before anything
    that can fail or wait (the run lock, the graph): a run waiting behind another one shows
    as queued, and one whose process dies is abandoned by the next start."""
    ctx.ledger.write(
        RunQueued(ctx.run_id, ctx.orchestrator, trigger, ctx.config.target_name, ctx.flow_run_id)
    )
    ctx.ledger.write(LeaseClaimed(ctx.run_id, this_host(), os.getpid()))
    keep_alive(ctx)


def close_run(
    config: MillpondConfig,
    ledger: Ledger,
    run_id: str,
    status: str,
    error: str | None,
    outcomes: list[Any],
    rows: int,
) -> dict[str, Any]:
    """Close the run with its outcome: the webhooks and the ledger's summary get the same
    rows and the same duration, the ledger's (from its start to the end recorded here, which
    is what `/runs/{id}` serves as `duration_ms`). Returns the summary recorded."""
    at = datetime.now(UTC)
    started = reads.run_started_at(ledger, run_id)
    duration_ms = None if started is None else _milliseconds(at - started)
    summary: dict[str, Any] = {"nodes": {o.node_id: o.status for o in outcomes}, "rows": rows}
    warnings = [f"{o.node_id}: {w}" for o in outcomes for w in (o.detail or {}).get("warnings", [])]
    if warnings:  # e.g. a stalled cursor (ingest.landing), kept with the run in the ledger
        summary["warnings"] = warnings
    summary.update(
        notify_run(config, run_id, status, error, outcomes, rows=rows, duration_ms=duration_ms)
    )
    ledger.write(RunFinished(run_id, status, error=error, summary=summary, at=at))
    return summary


def _milliseconds(delta: timedelta) -> int:
    """Rounded half up, as PostgreSQL's `::bigint` rounds the ledger's duration_ms."""
    return (delta // timedelta(microseconds=1) + 500) // 1000


def fail_start(ctx: RunContext, error: str) -> None:
    """Close a run that could not start (bad config or dbt project, Prefect server down) as
    failed with the reason, secrets masked; the webhooks are told as for any failed run."""
    close_run(ctx.config, ctx.ledger, ctx.run_id, "failed", mask(error), [], 0)
    ctx.closed = "failed"
