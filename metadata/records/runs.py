"""Records of a run's life in `millpond.runs`: asked for, started, leased, finished, abandoned."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, get_args

import psycopg

from millpond.metadata.records.base import LedgerRecord, as_jsonb, check_one_of, ensure_run, now

# Every status a run has in the ledger, in the order of its life; the API's filter, /metrics and
# the checks below all take them from here.
RunStatus = Literal["queued", "running", "success", "failed", "abandoned"]
RUN_STATUSES: tuple[str, ...] = get_args(RunStatus)
RUN_FINAL_STATUSES = frozenset(RUN_STATUSES) - {"queued", "running"}


@dataclass(frozen=True)
class RunOpening(LedgerRecord):
    """What a run is known by when it is asked for or begins; `queued` says which."""

    queued: ClassVar[bool]

    run_id: str
    orchestrator: str | None
    trigger: str | None
    target: str | None
    flow_run_id: str | None = None
    at: datetime = field(default_factory=now)


@dataclass(frozen=True)
class RunQueued(RunOpening, op="queue_run"):
    """A run asked for (`POST /runs`, a flow run of the deployment) before anything can fail;
    it turns `running` at `RunStarted`. Asking again, or asking for a run that opened
    meanwhile, only fills in fields still unknown."""

    queued: ClassVar[bool] = True

    def write(self, cur: psycopg.Cursor) -> None:
        cur.execute(
            """
            INSERT INTO millpond.runs
                (run_id, orchestrator, trigger, target, flow_run_id, queued_at, started_at,
                 status)
            VALUES (%s, %s, %s, %s, %s, %s, %s, 'queued')
            ON CONFLICT (run_id) DO UPDATE SET
                orchestrator = COALESCE(runs.orchestrator, EXCLUDED.orchestrator),
                trigger = COALESCE(runs.trigger, EXCLUDED.trigger),
                target = COALESCE(runs.target, EXCLUDED.target),
                flow_run_id = COALESCE(runs.flow_run_id, EXCLUDED.flow_run_id),
                queued_at = COALESCE(runs.queued_at, EXCLUDED.queued_at)
            """,
            (
                self.run_id,
                self.orchestrator,
                self.trigger,
                self.target,
                self.flow_run_id,
                self.at,
                self.at,
            ),
        )


@dataclass(frozen=True)
class RunStarted(RunOpening, op="start_run"):
    """A run began; a second record for the same run changes nothing.

    An existing run keeps everything it has; only fields still unknown (a row created by
    `NodeStarted`, or queued) are filled in. A queued run turns running and starts now: its
    duration is its own, not the wait in front of it (`queued_at` keeps when it was asked for).
    """

    queued: ClassVar[bool] = False

    def write(self, cur: psycopg.Cursor) -> None:
        cur.execute(
            """
            INSERT INTO millpond.runs
                (run_id, orchestrator, trigger, target, flow_run_id, started_at, status)
            VALUES (%s, %s, %s, %s, %s, %s, 'running')
            ON CONFLICT (run_id) DO UPDATE SET
                orchestrator = COALESCE(runs.orchestrator, EXCLUDED.orchestrator),
                trigger = COALESCE(runs.trigger, EXCLUDED.trigger),
                target = COALESCE(runs.target, EXCLUDED.target),
                flow_run_id = COALESCE(runs.flow_run_id, EXCLUDED.flow_run_id),
                started_at = CASE WHEN runs.status = 'queued' THEN EXCLUDED.started_at
                                  ELSE LEAST(runs.started_at, EXCLUDED.started_at) END,
                status = CASE WHEN runs.status = 'queued' THEN 'running' ELSE runs.status END
            """,
            (self.run_id, self.orchestrator, self.trigger, self.target, self.flow_run_id, self.at),
        )


@dataclass(frozen=True)
class RunFinished(LedgerRecord, op="finish_run"):
    """A run's outcome; `at` is its end (a caller that reports the run's duration elsewhere
    passes the end it measured)."""

    run_id: str
    status: str
    error: str | None = None
    summary: dict[str, Any] | None = None
    at: datetime = field(default_factory=now)

    def tidy(self) -> None:
        check_one_of("status", self.status, RUN_FINAL_STATUSES)

    def write(self, cur: psycopg.Cursor) -> None:
        cur.execute(
            """
            INSERT INTO millpond.runs (run_id, started_at, finished_at, status, error, summary)
            VALUES (%s, %s, %s, %s, %s, %s)
            ON CONFLICT (run_id) DO UPDATE SET
                finished_at = EXCLUDED.finished_at,
                status = EXCLUDED.status,
                error = EXCLUDED.error,
                summary = COALESCE(EXCLUDED.summary, runs.summary)
            """,
            (
                self.run_id,
                self.at,
                self.at,
                self.status,
                self.error,
                None if self.summary is None else as_jsonb(self.summary),
            ),
        )


@dataclass(frozen=True)
class LeaseClaimed(LedgerRecord, op="claim_lease"):
    """Who keeps the run alive (see millpond.runtime.lifecycle): a process (pid) on a host,
    or, with no pid (an Airflow run, whose tasks are short processes), only the heartbeat.
    Beats the lease once."""

    run_id: str
    host: str
    pid: int | None
    at: datetime = field(default_factory=now)

    def write(self, cur: psycopg.Cursor) -> None:
        ensure_run(cur, self.run_id, self.at)
        cur.execute(
            "UPDATE millpond.runs SET host = %s, pid = %s, heartbeat_at = %s WHERE run_id = %s",
            (self.host, self.pid, self.at, self.run_id),
        )


@dataclass(frozen=True)
class LeaseHeartbeat(LedgerRecord, op="heartbeat"):
    """The run's lease refreshed; `write` says whether the run is still open. A closed run
    stays closed: a late heartbeat (a task of an abandoned Airflow run) is moot. Never
    buffered: a replayed heartbeat would say that a dead run was alive."""

    replayable: ClassVar[bool] = False

    run_id: str
    at: datetime = field(default_factory=now)

    def write(self, cur: psycopg.Cursor) -> bool:
        cur.execute(
            "UPDATE millpond.runs SET heartbeat_at = GREATEST(heartbeat_at, %s) "
            "WHERE run_id = %s AND status IN ('queued', 'running')",
            (self.at, self.run_id),
        )
        return cur.rowcount > 0


@dataclass(frozen=True)
class RunAbandoned(LedgerRecord, op="abandon_run"):
    """A run whose process died, closed as `abandoned` with its running node attempts. Only a
    run still open (queued or running) is abandoned: one that closed meanwhile keeps its real
    status."""

    run_id: str
    reason: str
    at: datetime = field(default_factory=now)

    def write(self, cur: psycopg.Cursor) -> None:
        cur.execute(
            "UPDATE millpond.runs SET status = 'abandoned', finished_at = %s, error = %s "
            "WHERE run_id = %s AND status IN ('queued', 'running')",
            (self.at, self.reason, self.run_id),
        )
        cur.execute(
            """
            UPDATE millpond.node_runs SET status = 'abandoned', finished_at = %s, error = %s,
                duration_ms = (EXTRACT(EPOCH FROM (%s - started_at)) * 1000)::bigint
            WHERE run_id = %s AND status = 'running'
            """,
            (self.at, self.reason, self.at, self.run_id),
        )


@dataclass(frozen=True)
class QueuedRunFailed(LedgerRecord, op="fail_queued"):
    """A run that never opened (its process could not start, or died before it began): only
    a run still `queued` is closed, one that opened meanwhile keeps its own lifecycle; `write`
    says whether it was closed."""

    run_id: str
    error: str
    at: datetime = field(default_factory=now)

    def write(self, cur: psycopg.Cursor) -> bool:
        cur.execute(
            "UPDATE millpond.runs SET status = 'failed', finished_at = %s, error = %s, "
            "summary = COALESCE(summary, %s) WHERE run_id = %s AND status = 'queued'",
            (self.at, self.error, as_jsonb({"nodes": {}, "rows": 0}), self.run_id),
        )
        return cur.rowcount > 0
