"""The SQL of each ledger record kind, shared by live writes and buffer replay.

Each function takes an open cursor inside the caller's transaction and the record's arguments,
exactly as they are stored in a buffer line, so replaying a line is calling the same function.
All are upserts: running one twice leaves the same rows as running it once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def as_jsonb(value: Any) -> Jsonb:
    """Wrap a value for a jsonb column; odd types (dates, decimals) become strings, not errors."""
    return Jsonb(value, dumps=lambda obj: json.dumps(obj, default=str))


def ensure_run(cur: psycopg.Cursor, run_id: str, at: datetime) -> None:
    """Create a bare run row if needed: an Airflow task may be the first writer of its run."""
    cur.execute(
        "INSERT INTO millpond.runs (run_id, started_at, status) VALUES (%s, %s, 'running') "
        "ON CONFLICT (run_id) DO NOTHING",
        (run_id, at),
    )


def _op_queue_run(
    cur: psycopg.Cursor,
    run_id: str,
    orchestrator: str | None,
    trigger: str | None,
    target: str | None,
    flow_run_id: str | None,
    at: datetime,
) -> None:
    # A run asked for (POST /runs, a flow run of the deployment) before anything can fail.
    # Asking again, or asking for a run that opened meanwhile, only fills in unknown fields.
    cur.execute(
        """
        INSERT INTO millpond.runs
            (run_id, orchestrator, trigger, target, flow_run_id, queued_at, started_at, status)
        VALUES (%s, %s, %s, %s, %s, %s, %s, 'queued')
        ON CONFLICT (run_id) DO UPDATE SET
            orchestrator = COALESCE(runs.orchestrator, EXCLUDED.orchestrator),
            trigger = COALESCE(runs.trigger, EXCLUDED.trigger),
            target = COALESCE(runs.target, EXCLUDED.target),
            flow_run_id = COALESCE(runs.flow_run_id, EXCLUDED.flow_run_id),
            queued_at = COALESCE(runs.queued_at, EXCLUDED.queued_at)
        """,
        (run_id, orchestrator, trigger, target, flow_run_id, at, at),
    )


def _op_start_run(
    cur: psycopg.Cursor,
    run_id: str,
    orchestrator: str | None,
    trigger: str | None,
    target: str | None,
    flow_run_id: str | None,
    at: datetime,
) -> None:
    # An existing run keeps everything it has; only fields still unknown (a row created by
    # node_started, or queued) are filled in. A queued run turns running and starts now: its
    # duration is its own, not the wait in front of it (queued_at keeps when it was asked for).
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
        (run_id, orchestrator, trigger, target, flow_run_id, at),
    )


def _op_finish_run(
    cur: psycopg.Cursor,
    run_id: str,
    status: str,
    error: str | None,
    summary: dict[str, Any] | None,
    at: datetime,
) -> None:
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
        (run_id, at, at, status, error, None if summary is None else as_jsonb(summary)),
    )


def _op_node_started(
    cur: psycopg.Cursor, run_id: str, node_id: str, kind: str | None, attempt: int, at: datetime
) -> None:
    ensure_run(cur, run_id, at)
    # A replayed "started" must never turn a finished node back into "running".
    cur.execute(
        """
        INSERT INTO millpond.node_runs (run_id, node_id, kind, attempt, status, started_at)
        VALUES (%s, %s, %s, %s, 'running', %s)
        ON CONFLICT (run_id, node_id, attempt) DO UPDATE SET
            kind = COALESCE(node_runs.kind, EXCLUDED.kind),
            started_at = LEAST(node_runs.started_at, EXCLUDED.started_at)
        """,
        (run_id, node_id, kind, attempt, at),
    )


def _op_node_finished(  # noqa: PLR0913 (issue 24 makes ledger writes typed records)
    cur: psycopg.Cursor,
    run_id: str,
    node_id: str,
    attempt: int,
    status: str,
    duration_ms: int | None,
    rows: int | None,
    bytes: int | None,
    error: str | None,
    at: datetime,
) -> None:
    ensure_run(cur, run_id, at)
    started = at - timedelta(milliseconds=duration_ms or 0)
    cur.execute(
        """
        INSERT INTO millpond.node_runs (run_id, node_id, attempt, status, started_at,
                                        finished_at, duration_ms, rows, bytes, error)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (run_id, node_id, attempt) DO UPDATE SET
            status = EXCLUDED.status,
            finished_at = EXCLUDED.finished_at,
            duration_ms = EXCLUDED.duration_ms,
            rows = EXCLUDED.rows,
            bytes = EXCLUDED.bytes,
            error = EXCLUDED.error
        """,
        (run_id, node_id, attempt, status, started, at, duration_ms, rows, bytes, error),
    )


def _op_record_row_counts(
    cur: psycopg.Cursor, run_id: str, counts: dict[str, int], at: datetime
) -> None:
    ensure_run(cur, run_id, at)
    cur.executemany(
        """
        INSERT INTO millpond.row_counts (run_id, relation, rows, recorded_at)
        VALUES (%s, %s, %s, %s)
        ON CONFLICT (run_id, relation) DO UPDATE SET
            rows = EXCLUDED.rows, recorded_at = EXCLUDED.recorded_at
        """,
        [(run_id, relation, int(rows), at) for relation, rows in counts.items()],
    )


def _op_record_test_results(
    cur: psycopg.Cursor,
    run_id: str,
    node_id: str | None,
    results: list[dict[str, Any]],
    at: datetime,
) -> None:
    ensure_run(cur, run_id, at)
    cur.executemany(
        """
        INSERT INTO millpond.test_results
            (run_id, node_id, test, status, failures, message, recorded_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (run_id, test) DO UPDATE SET
            node_id = EXCLUDED.node_id,
            status = EXCLUDED.status,
            failures = EXCLUDED.failures,
            message = EXCLUDED.message,
            recorded_at = EXCLUDED.recorded_at
        """,
        [
            (run_id, node_id, r["test"], r["status"], r.get("failures"), r.get("message"), at)
            for r in results
        ],
    )


def _op_record_partition(  # noqa: PLR0913 (issue 24 makes ledger writes typed records)
    cur: psycopg.Cursor,
    source: str,
    table: str,
    partition_id: str,
    manifest_sha256: str | None,
    rows: int | None,
    bytes: int | None,
    landed_at: datetime,
    run_id: str | None,
) -> None:
    # Re-landing a partition with a different manifest means its content changed: it must be
    # loaded again, so loaded_at is cleared. The same manifest keeps its loaded state.
    cur.execute(
        """
        INSERT INTO millpond.partitions (partition_id, source, table_name, manifest_sha256,
                                         rows, bytes, landed_at, run_id)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (partition_id) DO UPDATE SET
            source = EXCLUDED.source,
            table_name = EXCLUDED.table_name,
            rows = EXCLUDED.rows,
            bytes = EXCLUDED.bytes,
            landed_at = EXCLUDED.landed_at,
            run_id = EXCLUDED.run_id,
            loaded_at = CASE
                WHEN partitions.manifest_sha256 IS NOT DISTINCT FROM EXCLUDED.manifest_sha256
                THEN partitions.loaded_at END,
            manifest_sha256 = EXCLUDED.manifest_sha256
        """,
        (partition_id, source, table, manifest_sha256, rows, bytes, landed_at, run_id),
    )


def _op_mark_partition_loaded(cur: psycopg.Cursor, partition_id: str, loaded_at: datetime) -> None:
    cur.execute(
        "UPDATE millpond.partitions SET loaded_at = %s WHERE partition_id = %s",
        (loaded_at, partition_id),
    )


def _op_set_source_state(
    cur: psycopg.Cursor, source: str, table: str, cursor: Any, at: datetime
) -> None:
    cur.execute(
        """
        INSERT INTO millpond.source_state (source, table_name, cursor, updated_at)
        VALUES (%s, %s, %s, %s)
        ON CONFLICT (source, table_name) DO UPDATE SET
            cursor = EXCLUDED.cursor, updated_at = EXCLUDED.updated_at
        """,
        (source, table, as_jsonb(cursor), at),
    )


def _op_record_lake_action(  # noqa: PLR0913 (issue 24 makes ledger writes typed records)
    cur: psycopg.Cursor,
    action_id: str,
    action: str,
    partition_id: str,
    source: str,
    table: str,
    rows: int | None,
    detail: dict[str, Any],
    at: datetime,
) -> None:
    # A dropped partition is no longer in the lake: its `partitions` row goes with it, and a
    # re-landed one is recorded again by record_partition.
    cur.execute(
        """
        INSERT INTO millpond.lake_actions
            (action_id, action, partition_id, source, table_name, rows, detail, at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (action_id) DO NOTHING
        """,
        (action_id, action, partition_id, source, table, rows, as_jsonb(detail), at),
    )
    if action == "drop":
        cur.execute("DELETE FROM millpond.partitions WHERE partition_id = %s", (partition_id,))


def _op_record_rejection(  # noqa: PLR0913 (issue 24 makes ledger writes typed records)
    cur: psycopg.Cursor,
    run_id: str,
    source: str,
    table: str,
    file: str,
    fingerprint: str,
    reason: str,
    outcome: str,
    bad_rows: int,
    at: datetime,
) -> None:
    cur.execute(
        """
        INSERT INTO millpond.rejected_files (run_id, source, table_name, file, fingerprint,
                                             outcome, bad_rows, reason, at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (run_id, source, table_name, fingerprint) DO UPDATE SET
            file = EXCLUDED.file,
            outcome = EXCLUDED.outcome,
            bad_rows = EXCLUDED.bad_rows,
            reason = EXCLUDED.reason,
            at = EXCLUDED.at
        """,
        (run_id, source, table, file, fingerprint, outcome, bad_rows, reason, at),
    )


def _op_claim_lease(
    cur: psycopg.Cursor, run_id: str, host: str, pid: int | None, at: datetime
) -> None:
    # The lease says who keeps the run alive: a process (pid) on a host, or, with no pid (an
    # Airflow run, whose tasks are short processes), only the heartbeat.
    ensure_run(cur, run_id, at)
    cur.execute(
        "UPDATE millpond.runs SET host = %s, pid = %s, heartbeat_at = %s WHERE run_id = %s",
        (host, pid, at, run_id),
    )


def _op_heartbeat(cur: psycopg.Cursor, run_id: str, at: datetime) -> bool:
    # A closed run stays closed: a late heartbeat (a task of an abandoned Airflow run) is moot.
    cur.execute(
        "UPDATE millpond.runs SET heartbeat_at = GREATEST(heartbeat_at, %s) "
        "WHERE run_id = %s AND status IN ('queued', 'running')",
        (at, run_id),
    )
    return cur.rowcount > 0


def _op_abandon_run(cur: psycopg.Cursor, run_id: str, reason: str, at: datetime) -> None:
    # Only a run still open (queued or running) is abandoned: one that closed meanwhile keeps
    # its real status.
    cur.execute(
        "UPDATE millpond.runs SET status = 'abandoned', finished_at = %s, error = %s "
        "WHERE run_id = %s AND status IN ('queued', 'running')",
        (at, reason, run_id),
    )
    cur.execute(
        """
        UPDATE millpond.node_runs SET status = 'abandoned', finished_at = %s, error = %s,
            duration_ms = (EXTRACT(EPOCH FROM (%s - started_at)) * 1000)::bigint
        WHERE run_id = %s AND status = 'running'
        """,
        (at, reason, at, run_id),
    )


def _op_fail_queued(cur: psycopg.Cursor, run_id: str, error: str, at: datetime) -> bool:
    # A run that never opened (its process could not start, or died before it began): only a
    # run still `queued` is closed, one that opened meanwhile keeps its own lifecycle.
    cur.execute(
        "UPDATE millpond.runs SET status = 'failed', finished_at = %s, error = %s, "
        "summary = COALESCE(summary, %s) WHERE run_id = %s AND status = 'queued'",
        (at, error, as_jsonb({"nodes": {}, "rows": 0}), run_id),
    )
    return cur.rowcount > 0


def _op_record_fingerprints(
    cur: psycopg.Cursor, run_id: str, fingerprints: dict[str, Any], at: datetime
) -> None:
    """node_id -> [fingerprint or None, rows or None] of the dbt nodes this run settled."""
    ensure_run(cur, run_id, at)
    cur.executemany(
        """
        INSERT INTO millpond.model_fingerprints (run_id, node_id, fingerprint, rows, recorded_at)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (run_id, node_id) DO UPDATE SET
            fingerprint = EXCLUDED.fingerprint, rows = EXCLUDED.rows,
            recorded_at = EXCLUDED.recorded_at
        """,
        [(run_id, node, fp, rows, at) for node, (fp, rows) in fingerprints.items()],
    )


OPS: dict[str, Callable[..., bool | None]] = {
    "queue_run": _op_queue_run,
    "start_run": _op_start_run,
    "finish_run": _op_finish_run,
    "node_started": _op_node_started,
    "node_finished": _op_node_finished,
    "record_row_counts": _op_record_row_counts,
    "record_test_results": _op_record_test_results,
    "record_partition": _op_record_partition,
    "mark_partition_loaded": _op_mark_partition_loaded,
    "set_source_state": _op_set_source_state,
    "record_lake_action": _op_record_lake_action,
    "record_rejection": _op_record_rejection,
    "claim_lease": _op_claim_lease,
    "heartbeat": _op_heartbeat,
    "abandon_run": _op_abandon_run,
    "fail_queued": _op_fail_queued,
    "record_fingerprints": _op_record_fingerprints,
}


def write(conn: psycopg.Connection, op: str, **args: Any) -> Any:
    """Apply one record on an open autocommit connection, in a transaction of its own: for a
    writer with no buffer (the API, whose request answers 503 when the ledger is down)."""
    with conn.transaction(), conn.cursor() as cur:
        return OPS[op](cur, **args)
