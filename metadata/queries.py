"""Read helpers over the ledger for the CLI, the API and the dashboard.

They take an open psycopg connection (the caller decides pooling and lifetime) and return plain
dicts/lists of dicts, so callers never depend on psycopg row types. Timestamps stay ``datetime``
objects: the API layer decides how to render them.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

_RUN_COLUMNS = """
    r.run_id, r.orchestrator, r.trigger, r.target, r.status, r.error, r.flow_run_id,
    r.started_at, r.finished_at,
    (EXTRACT(EPOCH FROM (r.finished_at - r.started_at)) * 1000)::bigint AS duration_ms,
    r.summary,
    (SELECT count(DISTINCT node_id) FROM millpond.node_runs n WHERE n.run_id = r.run_id)
        AS nodes,
    (SELECT count(*) FROM millpond.test_results t
        WHERE t.run_id = r.run_id AND t.status IN ('fail', 'error')) AS tests_failed
"""


def _all(conn: psycopg.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)
        return [dict(row) for row in cur.fetchall()]


def list_runs(conn: psycopg.Connection, limit: int = 50) -> list[dict[str, Any]]:
    """The most recent runs first, with duration and node/test-failure counts."""
    return _all(
        conn,
        f"SELECT {_RUN_COLUMNS} FROM millpond.runs r "
        "ORDER BY r.started_at DESC, r.run_id DESC LIMIT %s",
        (int(limit),),
    )


def get_run(conn: psycopg.Connection, run_id: str) -> dict[str, Any] | None:
    """One run, or None if the ledger has never heard of it."""
    rows = _all(conn, f"SELECT {_RUN_COLUMNS} FROM millpond.runs r WHERE r.run_id = %s", (run_id,))
    return rows[0] if rows else None


def run_nodes(conn: psycopg.Connection, run_id: str) -> list[dict[str, Any]]:
    """Every attempt of every node of a run, in the order they started."""
    return _all(
        conn,
        """
        SELECT run_id, node_id, kind, attempt, status, started_at, finished_at, duration_ms,
               rows, bytes, error
        FROM millpond.node_runs WHERE run_id = %s
        ORDER BY started_at NULLS LAST, node_id, attempt
        """,
        (run_id,),
    )


def job_status(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Latest status of every node ever run (its latest run, highest attempt)."""
    return _all(conn, "SELECT * FROM millpond.job_status ORDER BY node_id")


def test_results(conn: psycopg.Connection, run_id: str) -> list[dict[str, Any]]:
    """Data test outcomes of a run, failures first."""
    return _all(
        conn,
        """
        SELECT run_id, node_id, test, status, failures, message, recorded_at
        FROM millpond.test_results WHERE run_id = %s
        ORDER BY status IN ('pass', 'skipped'), test
        """,
        (run_id,),
    )


def row_counts(conn: psycopg.Connection, run_id: str) -> list[dict[str, Any]]:
    """Row count of each relation a run built."""
    return _all(
        conn,
        "SELECT run_id, relation, rows, recorded_at FROM millpond.row_counts "
        "WHERE run_id = %s ORDER BY relation",
        (run_id,),
    )


def partitions(
    conn: psycopg.Connection,
    source: str | None = None,
    table: str | None = None,
    *,
    unloaded_only: bool = False,
) -> list[dict[str, Any]]:
    """Landed partitions (optionally of one source/table, optionally only those not loaded)."""
    return _all(
        conn,
        """
        SELECT partition_id, source, table_name, manifest_sha256, rows, bytes, landed_at,
               loaded_at, run_id
        FROM millpond.partitions
        WHERE (%(source)s::text IS NULL OR source = %(source)s)
          AND (%(table)s::text IS NULL OR table_name = %(table)s)
          AND (NOT %(unloaded)s OR loaded_at IS NULL)
        ORDER BY source, table_name, landed_at, partition_id
        """,
        {"source": source, "table": table, "unloaded": unloaded_only},  # type: ignore[arg-type]
    )
