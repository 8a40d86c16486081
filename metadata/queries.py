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
    r.queued_at, r.started_at, r.finished_at, r.retry_of,
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


def retries_of(conn: psycopg.Connection, run_id: str) -> list[str]:
    """The runs that retried this one (`millpond retry`), oldest first."""
    rows = _all(
        conn,
        "SELECT run_id FROM millpond.runs WHERE retry_of = %s ORDER BY started_at, run_id",
        (run_id,),
    )
    return [r["run_id"] for r in rows]


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


# --- serving: filtered history, trends and aggregates (the API, /metrics and the dashboard) --


def find_runs(
    conn: psycopg.Connection,
    *,
    status: str | None = None,
    since: Any = None,
    until: Any = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """A page of runs (newest first) matching the filters, and how many match in all."""
    where = """
        WHERE (%(status)s::text IS NULL OR r.status = %(status)s)
          AND (%(since)s::timestamptz IS NULL OR r.started_at >= %(since)s)
          AND (%(until)s::timestamptz IS NULL OR r.started_at < %(until)s)
    """
    params = {"status": status, "since": since, "until": until}
    rows = _all(
        conn,
        f"SELECT {_RUN_COLUMNS} FROM millpond.runs r {where} "
        "ORDER BY r.started_at DESC, r.run_id DESC LIMIT %(limit)s OFFSET %(offset)s",
        {**params, "limit": int(limit), "offset": int(offset)},  # type: ignore[arg-type]
    )
    total = _all(conn, f"SELECT count(*) AS n FROM millpond.runs r {where}", params)  # type: ignore[arg-type]
    return rows, int(total[0]["n"])


def running_runs(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Runs the ledger still sees as open (queued or running), newest first."""
    return _all(
        conn,
        "SELECT run_id, trigger, status, started_at FROM millpond.runs "
        "WHERE status IN ('queued', 'running') ORDER BY started_at DESC",
    )


def row_count_history(
    conn: psycopg.Connection, relation: str | None = None, limit_runs: int = 50
) -> list[dict[str, Any]]:
    """Rows per relation over the most recent runs (oldest first), for trends and plots."""
    return _all(
        conn,
        """
        SELECT c.relation, c.run_id, c.rows, c.recorded_at
        FROM millpond.row_counts c
        WHERE c.run_id IN (SELECT run_id FROM millpond.runs ORDER BY started_at DESC LIMIT %s)
          AND (%s::text IS NULL OR c.relation = %s)
        ORDER BY c.relation, c.recorded_at
        """,
        (int(limit_runs), relation, relation),
    )


def test_history(
    conn: psycopg.Connection,
    *,
    status: str | None = None,
    test: str | None = None,
    limit_runs: int = 20,
) -> list[dict[str, Any]]:
    """Data test outcomes over the most recent runs, newest first."""
    return _all(
        conn,
        """
        SELECT t.run_id, t.node_id, t.test, t.status, t.failures, t.message, t.recorded_at
        FROM millpond.test_results t
        WHERE t.run_id IN (SELECT run_id FROM millpond.runs ORDER BY started_at DESC LIMIT %s)
          AND (%s::text IS NULL OR t.status = %s)
          AND (%s::text IS NULL OR t.test = %s)
        ORDER BY t.recorded_at DESC, t.test
        """,
        (int(limit_runs), status, status, test, test),
    )


def runs_by_status(conn: psycopg.Connection) -> dict[str, int]:
    """How many runs ended (or are) in each status."""
    rows = _all(conn, "SELECT status, count(*) AS n FROM millpond.runs GROUP BY status")
    return {r["status"]: int(r["n"]) for r in rows}


def node_durations(conn: psycopg.Connection, limit_runs: int = 50) -> list[dict[str, Any]]:
    """Finished node attempts of the most recent runs (kind, status, duration, rows)."""
    return _all(
        conn,
        """
        SELECT n.run_id, n.node_id, n.kind, n.status, n.duration_ms, n.rows, n.started_at
        FROM millpond.node_runs n
        WHERE n.run_id IN (SELECT run_id FROM millpond.runs ORDER BY started_at DESC LIMIT %s)
          AND n.status IN ('success', 'failed')
        ORDER BY n.started_at NULLS LAST, n.node_id
        """,
        (int(limit_runs),),
    )


def rows_loaded_by_node(conn: psycopg.Connection) -> dict[str, int]:
    """Total rows every node reported over all successful attempts."""
    rows = _all(
        conn,
        "SELECT node_id, sum(rows) AS n FROM millpond.node_runs "
        "WHERE status = 'success' AND rows IS NOT NULL GROUP BY node_id",
    )
    return {r["node_id"]: int(r["n"]) for r in rows}


def test_failures_by_test(conn: psycopg.Connection) -> dict[str, int]:
    """How many runs each test failed or errored in."""
    rows = _all(
        conn,
        "SELECT test, count(*) AS n FROM millpond.test_results "
        "WHERE status IN ('fail', 'error') GROUP BY test",
    )
    return {r["test"]: int(r["n"]) for r in rows}


def source_freshness(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Per source table: when a partition last landed and when it was last loaded."""
    return _all(
        conn,
        """
        SELECT source, table_name, max(landed_at) AS last_landed_at,
               max(loaded_at) AS last_loaded_at, count(*) AS partitions, sum(rows) AS rows
        FROM millpond.partitions GROUP BY source, table_name ORDER BY source, table_name
        """,
    )


def last_success_by_node(conn: psycopg.Connection, prefix: str = "load.") -> dict[str, Any]:
    """When each node (by id prefix) last finished successfully."""
    rows = _all(
        conn,
        "SELECT node_id, max(finished_at) AS at FROM millpond.node_runs "
        "WHERE status = 'success' AND node_id LIKE %s GROUP BY node_id",
        (prefix.replace("%", r"\%").replace("_", r"\_") + "%",),
    )
    return {r["node_id"]: r["at"] for r in rows}


def anomalies(
    conn: psycopg.Connection,
    *,
    run_id: str | None = None,
    monitor: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """What the monitors found (volume anomalies, freshness alerts), newest first; of one
    run, or all (those of `millpond check-freshness` have no run)."""
    return _all(
        conn,
        """
        SELECT anomaly_id, run_id, monitor, subject_kind, subject, severity, observed, low,
               high, median, mad, history, last_landed_at, expect_every_seconds, message, at
        FROM millpond.anomalies
        WHERE (%s::text IS NULL OR run_id = %s) AND (%s::text IS NULL OR monitor = %s)
        ORDER BY at DESC, subject LIMIT %s
        """,
        (run_id, run_id, monitor, monitor, int(limit)),
    )


def anomaly_count(conn: psycopg.Connection, days: int = 7) -> int:
    """How many findings the monitors recorded in the last `days` days (the dashboard's line)."""
    rows = _all(
        conn,
        "SELECT count(*) AS n FROM millpond.anomalies WHERE at > now() - make_interval(days => %s)",
        (int(days),),
    )
    return int(rows[0]["n"])


def failed_nodes(conn: psycopg.Connection, limit: int = 20) -> list[dict[str, Any]]:
    """The most recent failed node attempts, newest first, with their run (the dashboard's
    failures, each linking to the node's log)."""
    return _all(
        conn,
        """
        SELECT n.run_id, n.node_id, n.kind, n.attempt, n.finished_at, n.error
        FROM millpond.node_runs n
        WHERE n.status = 'failed'
        ORDER BY n.finished_at DESC NULLS LAST, n.run_id DESC, n.node_id
        LIMIT %s
        """,
        (int(limit),),
    )
