"""What a run reads back from the ledger while it works: open runs and their leases (the run
start), node attempts (the Airflow close task), loaded partitions and row counts (load nodes,
nothing-new), fingerprints (dbt nodes, `millpond doctor`), source cursors.

Unlike `metadata.queries` (the API's and the CLI's reads on a plain connection), these go
through the run's `metadata.ledger.Ledger`, so they see every record the run wrote: buffered
records are flushed first, and while some remain buffered a read raises
`LedgerUnavailableError` rather than give a stale answer (which would make changed data look
unchanged), unless it can merge the buffered records itself (`source_cursor`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from millpond.metadata.ledger import Ledger, LedgerUnavailableError
from millpond.metadata.records import SourceState


def running_runs(ledger: Ledger) -> list[dict[str, Any]]:
    """The runs still open (`queued` or `running`), with their lease and status, so a new
    start can tell dead ones (a run whose close is buffered is not running)."""
    return ledger.read_dicts(
        "SELECT run_id, status, orchestrator, flow_run_id, host, pid, heartbeat_at, "
        "started_at FROM millpond.runs WHERE status IN ('queued', 'running') "
        "ORDER BY started_at",
        (),
    )


def run_started_at(ledger: Ledger, run_id: str) -> datetime | None:
    """When the run started, as the ledger has it (what `/runs` measures its duration from);
    when the ledger cannot tell (down, buffering), when this Ledger queued or started it."""
    try:
        rows = ledger.read("SELECT started_at FROM millpond.runs WHERE run_id = %s", (run_id,))
    except LedgerUnavailableError:
        rows = []
    return rows[0][0] if rows else ledger.opened_at(run_id)


def latest_attempts(ledger: Ledger, run_id: str) -> dict[str, dict[str, Any]]:
    """Each node's latest attempt in a run (status, rows, bytes, duration, error), for an
    orchestrator whose nodes ran in other processes (the Airflow close task)."""
    rows = ledger.read_dicts(
        "SELECT DISTINCT ON (node_id) node_id, attempt, status, duration_ms, rows, "
        "bytes, error FROM millpond.node_runs WHERE run_id = %s "
        "ORDER BY node_id, attempt DESC",
        (run_id,),
    )
    return {row["node_id"]: row for row in rows}


def loaded_partitions(ledger: Ledger, source: str, table: str) -> list[tuple[str, str | None]]:
    """(partition_id, manifest_sha256) of every partition of a table in the warehouse."""
    rows = ledger.read(
        "SELECT partition_id, manifest_sha256 FROM millpond.partitions "
        "WHERE source = %s AND table_name = %s AND loaded_at IS NOT NULL "
        "ORDER BY partition_id",
        (source, table),
    )
    return [(r[0], r[1]) for r in rows]


def latest_row_count(ledger: Ledger, relation: str) -> int | None:
    """The relation's row count as the last run that recorded one counted it."""
    rows = ledger.read(
        "SELECT rows FROM millpond.row_counts WHERE relation = %s "
        "ORDER BY recorded_at DESC LIMIT 1",
        (relation,),
    )
    return rows[0][0] if rows else None


def fingerprints(ledger: Ledger, publish_kind: str) -> tuple[dict[str, str], dict[str, Any]]:
    """The fingerprints of the currently published run (the latest where a node of
    `publish_kind` succeeded), and each node's latest record ([fingerprint, rows]): what the
    warehouse holds now."""
    published = ledger.read(
        """
        SELECT f.node_id, f.fingerprint FROM millpond.model_fingerprints f
        WHERE f.run_id = (
            SELECT run_id FROM millpond.node_runs
            WHERE kind = %s AND status = 'success'
            ORDER BY finished_at DESC LIMIT 1)
        """,
        (publish_kind,),
    )
    latest = ledger.read(
        """
        SELECT DISTINCT ON (node_id) node_id, fingerprint, rows
        FROM millpond.model_fingerprints ORDER BY node_id, recorded_at DESC
        """,
        (),
    )
    return (
        {r[0]: r[1] for r in published if r[1] is not None},
        {r[0]: [r[1], r[2]] for r in latest},
    )


def source_cursor(ledger: Ledger, source: str, table: str) -> Any | None:
    """The stored cursor of a source table, or None if it has none yet.

    Buffered (not yet flushed) cursors are newer than the database's, so they win. Raises
    :class:`LedgerUnavailableError` when the database is down and nothing is buffered:
    guessing "no cursor" would silently reload a whole source."""
    buffered = ledger.pending(SourceState, source=source, table=table)
    if buffered is not None:
        return buffered.cursor
    try:
        rows = ledger.read(
            "SELECT cursor FROM millpond.source_state WHERE source = %s AND table_name = %s",
            (source, table),
            behind_ok=True,
        )
    except LedgerUnavailableError:
        buffered = ledger.pending(SourceState, source=source, table=table)
        if buffered is not None:
            return buffered.cursor
        raise
    return rows[0][0] if rows else None
