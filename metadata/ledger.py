"""The run ledger: small, idempotent writes that never stop a run.

Every public write is one short transaction of upserts, so a retried node, a re-sent record or a
replayed buffer line never duplicates a row. Timestamps are taken on the client when the call
is made, not by the database, so records replayed later keep their real time.

When the database is unreachable (connection refused, timeout, server gone, statement timeout:
psycopg ``OperationalError``), the record is appended as one JSON line to a local buffer file,
a warning is logged once per outage, and the caller goes on. Once records are buffered, later
writes go through the buffer too until it is flushed, so the database sees records in the
order they were made. After a failure the database is not retried for ``retry_interval``
seconds, so a down server costs one connect timeout, not one per node.

Errors that are not about reachability (a missing table, a bad value) are bugs and are raised.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from loguru import logger

from metadata.buffer import RecordBuffer, ledger_identity
from metadata.db import CONNECT_TIMEOUT_S, normalize_url
from metadata.records import OPS
from millpond.core.masking import mask

RUN_FINAL_STATUSES = frozenset({"success", "failed", "abandoned"})
NODE_FINAL_STATUSES = frozenset({"success", "failed", "skipped", "unchanged", "abandoned"})
TEST_STATUSES = frozenset({"pass", "fail", "warn", "error", "skipped"})
LAKE_ACTIONS = frozenset({"drop", "reland", "replay"})
STATEMENT_TIMEOUT_MS = 10_000

# Failures that mean "the ledger is not reachable right now": buffer and carry on.
_UNREACHABLE = (psycopg.OperationalError, psycopg.InterfaceError)
# Failures of one record's content while replaying: set it aside instead of blocking the rest.
_BAD_RECORD = (psycopg.DataError, psycopg.IntegrityError, ValueError, TypeError, KeyError)


class LedgerUnavailableError(RuntimeError):
    """A read needed the ledger database and it could not be reached."""


# Record fields holding free text (an exception's message can quote a URL, a connection string,
# compiled SQL): masked whoever called, before the database or the local buffer sees them.
_TEXT_FIELDS = {"error", "errors", "reason", "message", "detail"}


def masked_text(value: Any, key: str = "") -> Any:
    """The record with every registered secret masked in its free-text fields (identifiers
    such as node ids and paths are left as they are)."""
    if isinstance(value, dict):
        return {k: masked_text(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked_text(v, key) for v in value]
    if isinstance(value, str) and key in _TEXT_FIELDS:
        return mask(value)
    return value


def _now() -> datetime:
    return datetime.now(UTC)


def _validate(name: str, value: str, allowed: frozenset[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value!r}")


class Ledger:
    """Writes run records to the ledger database, buffering locally when it is unreachable.

    One connection per Ledger, opened lazily and reopened after a failure; a lock serialises
    use of it because nodes of a run execute in threads. The buffer file may be shared with
    other processes on the machine (an inter-process file lock guards appends and flushes),
    never with another ledger: give each its own (`metadata.buffer.buffer_path`).
    """

    def __init__(
        self,
        url: str,
        buffer_path: Path,
        *,
        connect_timeout: int = CONNECT_TIMEOUT_S,
        retry_interval: float = 30.0,
    ) -> None:
        self.url = normalize_url(url)
        self.buffer_path = Path(buffer_path)
        # The buffer holds this ledger's records only (see metadata.buffer): a file recorded
        # for another ledger is refused rather than replayed here.
        self._buffer = RecordBuffer(self.buffer_path, ledger=ledger_identity(self.url))
        self._buffer.check_owner()
        self.rejected_path = self._buffer.rejected_path
        self.connect_timeout = connect_timeout
        self.retry_interval = retry_interval
        self.buffered = 0  # records this Ledger had to buffer: surfaced in run summaries
        self._lock = threading.RLock()
        self._conn: psycopg.Connection | None = None
        self._retry_at = 0.0
        self._warned = False
        # run id -> (when this Ledger queued or started it, still queued): the ledger's
        # started_at when the database cannot be asked.
        self._started: dict[str, tuple[datetime, bool]] = {}

    # --- public writes ----------------------------------------------------------------------

    def queue_run(
        self,
        run_id: str,
        orchestrator: str | None,
        trigger: str | None,
        target: str | None,
        flow_run_id: str | None = None,
    ) -> bool:
        """Record that a run was asked for (`queued`), before anything that can fail; it turns
        `running` at `start_run`. Asking again changes nothing but fields still unknown."""
        at = _now()
        self._started.setdefault(run_id, (at, True))
        return self._submit(
            "queue_run",
            run_id=run_id,
            orchestrator=orchestrator,
            trigger=trigger,
            target=target,
            flow_run_id=flow_run_id,
            at=at,
        )

    def start_run(
        self,
        run_id: str,
        orchestrator: str | None,
        trigger: str | None,
        target: str | None,
        flow_run_id: str | None = None,
    ) -> bool:
        """Record that a run began; a second call for the same run changes nothing."""
        at = _now()
        known = self._started.get(run_id)
        if known is None or known[1]:  # as the ledger does: a queued run starts now
            self._started[run_id] = (at, False)
        return self._submit(
            "start_run",
            run_id=run_id,
            orchestrator=orchestrator,
            trigger=trigger,
            target=target,
            flow_run_id=flow_run_id,
            at=at,
        )

    def finish_run(
        self,
        run_id: str,
        status: str,
        error: str | None = None,
        summary: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> bool:
        """Record a run's outcome (``success`` or ``failed``); `at` is its end (default now:
        a caller that reports the run's duration elsewhere passes the end it measured to)."""
        _validate("status", status, RUN_FINAL_STATUSES)
        return self._submit(
            "finish_run",
            run_id=run_id,
            status=status,
            error=error,
            summary=summary,
            at=at or _now(),
        )

    def node_started(self, run_id: str, node_id: str, kind: str | None, attempt: int = 1) -> bool:
        """Record that an attempt of a node began (creating the run row if it is the first)."""
        return self._submit(
            "node_started", run_id=run_id, node_id=node_id, kind=kind, attempt=attempt, at=_now()
        )

    def node_finished(
        self,
        run_id: str,
        node_id: str,
        attempt: int,
        status: str,
        duration_ms: int | None,
        rows: int | None = None,
        bytes: int | None = None,
        error: str | None = None,
    ) -> bool:
        """Record how an attempt of a node ended (``success``, ``failed`` or ``skipped``)."""
        _validate("status", status, NODE_FINAL_STATUSES)
        return self._submit(
            "node_finished",
            run_id=run_id,
            node_id=node_id,
            attempt=attempt,
            status=status,
            duration_ms=None if duration_ms is None else int(duration_ms),
            rows=rows,
            bytes=bytes,
            error=error,
            at=_now(),
        )

    def record_row_counts(self, run_id: str, counts: dict[str, int]) -> bool:
        """Record the row count of each relation (model, table) after a run built it."""
        if not counts:
            return True
        return self._submit("record_row_counts", run_id=run_id, counts=dict(counts), at=_now())

    def record_test_results(
        self, run_id: str, node_id: str | None, results: list[dict[str, Any]]
    ) -> bool:
        """Record data test outcomes: dicts with ``test``, ``status``, ``failures``, ``message``."""
        if not results:
            return True
        clean = []
        for result in results:
            _validate("test status", result["status"], TEST_STATUSES)
            clean.append(
                {
                    "test": str(result["test"]),
                    "status": result["status"],
                    "failures": result.get("failures"),
                    "message": result.get("message"),
                }
            )
        return self._submit(
            "record_test_results", run_id=run_id, node_id=node_id, results=clean, at=_now()
        )

    def record_partition(
        self,
        source: str,
        table: str,
        partition_id: str,
        manifest_sha256: str | None,
        rows: int | None,
        bytes: int | None,
        landed_at: datetime | None = None,
        run_id: str | None = None,
    ) -> bool:
        """Record a partition landed in the lake (a changed manifest marks it not loaded)."""
        return self._submit(
            "record_partition",
            source=source,
            table=table,
            partition_id=partition_id,
            manifest_sha256=manifest_sha256,
            rows=rows,
            bytes=bytes,
            landed_at=landed_at or _now(),
            run_id=run_id,
        )

    def mark_partition_loaded(self, partition_id: str, loaded_at: datetime | None = None) -> bool:
        """Record that a landed partition is now in the warehouse."""
        return self._submit(
            "mark_partition_loaded", partition_id=partition_id, loaded_at=loaded_at or _now()
        )

    def record_lake_action(
        self,
        action: str,
        partition_id: str,
        source: str,
        table: str,
        rows: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> bool:
        """Record a partition taken back (`drop`) or re-landed / replayed by a backfill."""
        _validate("lake action", action, LAKE_ACTIONS)
        return self._submit(
            "record_lake_action",
            action_id=uuid.uuid4().hex,
            action=action,
            partition_id=partition_id,
            source=source,
            table=table,
            rows=rows,
            detail=detail or {},
            at=_now(),
        )

    def set_source_state(self, source: str, table: str, cursor: Any) -> bool:
        """Store the incremental cursor (any JSON value) of a source table."""
        return self._submit(
            "set_source_state", source=source, table=table, cursor=cursor, at=_now()
        )

    def record_rejection(
        self,
        run_id: str,
        source: str,
        table: str,
        file: str,
        fingerprint: str,
        reason: str,
        outcome: str = "rejected",
        bad_rows: int = 0,
    ) -> bool:
        """Record a file kept out of its table at landing (`rejected`), or landed with bad
        rows set aside (`quarantined`)."""
        _validate("outcome", outcome, frozenset({"rejected", "quarantined"}))
        return self._submit(
            "record_rejection",
            run_id=run_id,
            source=source,
            table=table,
            file=file,
            fingerprint=fingerprint,
            reason=reason,
            outcome=outcome,
            bad_rows=bad_rows,
            at=_now(),
        )

    def claim_lease(self, run_id: str, host: str, pid: int | None) -> bool:
        """Record who keeps the run alive (see millpond.runtime.lifecycle); beats it once."""
        return self._submit("claim_lease", run_id=run_id, host=host, pid=pid, at=_now())

    def heartbeat(self, run_id: str) -> bool | None:
        """Refresh the run's lease: True if it did, False if the run is no longer `running`,
        None if the database is unreachable or behind. Never buffered: a replayed heartbeat
        would say that a dead run was alive."""
        with self._lock:
            if self._buffer.has_records() or time.monotonic() < self._retry_at:
                return None
            try:
                beat = self._execute("heartbeat", {"run_id": run_id, "at": _now()})
            except _UNREACHABLE as exc:
                self._went_down(exc)
                return None
            return bool(beat)

    def abandon_run(self, run_id: str, reason: str) -> bool:
        """Close a run whose process died, and its running node attempts, as ``abandoned``."""
        return self._submit("abandon_run", run_id=run_id, reason=reason, at=_now())

    def record_fingerprints(
        self, run_id: str, fingerprints: dict[str, tuple[str | None, int | None]]
    ) -> bool:
        """Record what each dbt node's relation was built from (None: rebuild it next time)."""
        if not fingerprints:
            return True
        clean = {node: [fp, rows] for node, (fp, rows) in fingerprints.items()}
        return self._submit("record_fingerprints", run_id=run_id, fingerprints=clean, at=_now())

    # --- public reads -----------------------------------------------------------------------

    def running_runs(self) -> list[dict[str, Any]]:
        """The runs still open (`queued` or `running`), with their lease and status, so a new
        start can tell dead ones (after buffered records are flushed: a run whose close is
        buffered is not running).

        Raises :class:`LedgerUnavailableError` as :meth:`loaded_partitions` does."""
        return self._read_dicts(
            "SELECT run_id, status, orchestrator, flow_run_id, host, pid, heartbeat_at, "
            "started_at FROM millpond.runs WHERE status IN ('queued', 'running') "
            "ORDER BY started_at",
            (),
        )

    def run_started_at(self, run_id: str) -> datetime | None:
        """When the run started, as the ledger has it (what `/runs` measures its duration
        from); when the ledger cannot tell (down, buffering), when this Ledger started it."""
        try:
            rows = self._read("SELECT started_at FROM millpond.runs WHERE run_id = %s", (run_id,))
        except LedgerUnavailableError:
            rows = []
        if rows:
            return rows[0][0]
        known = self._started.get(run_id)
        return known[0] if known else None

    def latest_attempts(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Each node's latest attempt in a run (status, rows, bytes, duration, error), for an
        orchestrator whose nodes ran in other processes (the Airflow close task).

        Raises :class:`LedgerUnavailableError` as :meth:`loaded_partitions` does."""
        rows = self._read_dicts(
            "SELECT DISTINCT ON (node_id) node_id, attempt, status, duration_ms, rows, "
            "bytes, error FROM millpond.node_runs WHERE run_id = %s "
            "ORDER BY node_id, attempt DESC",
            (run_id,),
        )
        return {row["node_id"]: row for row in rows}

    def loaded_partitions(self, source: str, table: str) -> list[tuple[str, str | None]]:
        """(partition_id, manifest_sha256) of every partition of a table in the warehouse.

        Raises :class:`LedgerUnavailableError` when the database is down or records are still
        buffered: a stale answer would make changed data look unchanged."""
        rows = self._read(
            "SELECT partition_id, manifest_sha256 FROM millpond.partitions "
            "WHERE source = %s AND table_name = %s AND loaded_at IS NOT NULL "
            "ORDER BY partition_id",
            (source, table),
        )
        return [(r[0], r[1]) for r in rows]

    def latest_row_count(self, relation: str) -> int | None:
        """The relation's row count as the last run that recorded one counted it; raises
        :class:`LedgerUnavailableError` as :meth:`loaded_partitions` does."""
        rows = self._read(
            "SELECT rows FROM millpond.row_counts WHERE relation = %s "
            "ORDER BY recorded_at DESC LIMIT 1",
            (relation,),
        )
        return rows[0][0] if rows else None

    def fingerprints(self, publish_kind: str) -> tuple[dict[str, str], dict[str, Any]]:
        """The fingerprints of the currently published run (the latest where a node of
        `publish_kind` succeeded), and each node's latest record ([fingerprint, rows]): what
        the warehouse holds now. Raises :class:`LedgerUnavailableError` as
        :meth:`loaded_partitions` does."""
        published = self._read(
            """
            SELECT f.node_id, f.fingerprint FROM millpond.model_fingerprints f
            WHERE f.run_id = (
                SELECT run_id FROM millpond.node_runs
                WHERE kind = %s AND status = 'success'
                ORDER BY finished_at DESC LIMIT 1)
            """,
            (publish_kind,),
        )
        latest = self._read(
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

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Rows of a read that must see every record written so far (nothing buffered)."""
        return self._query(sql, params)[1]

    def _read_dicts(self, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        """As :meth:`_read`, each row a dict by column name."""
        names, rows = self._query(sql, params)
        return [dict(zip(names, row, strict=True)) for row in rows]

    def _query(self, sql: str, params: tuple[Any, ...]) -> tuple[list[str], list[tuple[Any, ...]]]:
        with self._lock:
            if self._buffer.has_records() and self._flush_locked() is None:
                raise LedgerUnavailableError("ledger records are still buffered")
            try:
                cur = self._connection().execute(sql, params)
                return [c.name for c in cur.description or []], list(cur.fetchall())
            except _UNREACHABLE as exc:
                self._went_down(exc)
                raise LedgerUnavailableError(f"ledger unreachable: {exc}") from exc

    def get_source_state(self, source: str, table: str) -> Any | None:
        """Return the stored cursor of a source table, or None if it has none yet.

        Buffered (not yet flushed) cursors are newer than the database's, so they win. Raises
        :class:`LedgerUnavailableError` when the database is down and nothing is buffered:
        guessing "no cursor" would silently reload a whole source.
        """
        with self._lock:
            if self._buffer.has_records() and self._flush_locked() is None:
                buffered = self._buffer.latest("set_source_state", source=source, table=table)
                if buffered is not None:
                    return buffered.get("cursor")
            try:
                conn = self._connection()
                row = conn.execute(
                    "SELECT cursor FROM millpond.source_state "
                    "WHERE source = %s AND table_name = %s",
                    (source, table),
                ).fetchone()
            except _UNREACHABLE as exc:
                self._went_down(exc)
                buffered = self._buffer.latest("set_source_state", source=source, table=table)
                if buffered is not None:
                    return buffered.get("cursor")
                raise LedgerUnavailableError(f"ledger unreachable: {exc}") from exc
            return row[0] if row else None

    # --- buffer -----------------------------------------------------------------------------

    def flush_buffer(self) -> int:
        """Replay buffered records in order; return how many reached the database.

        Each record commits on its own and lines are removed only after their commit, so a
        crash mid-flush at worst replays a few records again (harmless: writes are upserts).
        Returns 0 without raising when the database is still unreachable.
        """
        with self._lock:
            self._retry_at = 0.0  # an explicit flush always tries the database
            return self._flush_locked() or 0

    @property
    def degraded(self) -> bool:
        """True while records are waiting in the buffer file (the ledger is behind)."""
        return self._buffer.has_records()

    def close(self) -> None:
        """Close the connection (buffered records stay on disk for a later flush)."""
        with self._lock:
            self._drop_connection()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals --------------------------------------------------------------------------

    def _submit(self, op: str, **args: Any) -> bool:
        """Write one record now, or buffer it; True if it reached the database."""
        args = masked_text(args)
        with self._lock:
            if self._buffer.has_records() and self._flush_locked() is None:
                self._append(op, args)
                return False
            if time.monotonic() < self._retry_at:
                self._append(op, args)
                return False
            try:
                self._execute(op, args)
            except _UNREACHABLE as exc:
                self._went_down(exc)
                self._append(op, args)
                return False
            return True

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            if time.monotonic() < self._retry_at:
                raise psycopg.OperationalError("ledger database marked down; retrying later")
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=self.connect_timeout)
            # A ledger write that waits on a lock must not hold a node up indefinitely.
            conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            self._conn = conn
        return self._conn

    def _execute(self, op: str, args: dict[str, Any]) -> Any:
        conn = self._connection()
        with conn.transaction(), conn.cursor() as cur:
            return OPS[op](cur, **args)

    def _went_down(self, exc: BaseException) -> None:
        self._drop_connection()
        self._retry_at = time.monotonic() + self.retry_interval
        if not self._warned:
            self._warned = True
            logger.warning(
                "ledger database unreachable ({}); buffering records in {} and carrying on",
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                self.buffer_path,
            )

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def _append(self, op: str, args: dict[str, Any]) -> None:
        self._buffer.append(op, args)
        self.buffered += 1

    def _flush_locked(self) -> int | None:
        """Replay the buffer; the count flushed, or None if records remain (DB unreachable)."""
        if not self._buffer.has_records():
            return 0
        if time.monotonic() < self._retry_at:
            return None
        flushed, down = self._buffer.replay(self._execute, _UNREACHABLE, _BAD_RECORD)
        if down is not None:
            self._went_down(down)
        if flushed:
            logger.info("ledger: flushed {} buffered record(s) to the database", flushed)
        if down is not None:
            return None
        self._warned = False  # a later outage deserves a new warning
        return flushed
