"""The run's ledger writer: records written through one path that never stops a run.

`Ledger.write` takes any `metadata.records` record (one short transaction of upserts, its own
SQL). When the database is unreachable (connection refused, timeout, server gone, statement
timeout: psycopg ``OperationalError``), the record is appended as one JSON line to a local
buffer file (`metadata.buffer`), a warning is logged once per outage, and the caller goes on.
Once records are buffered, later writes go through the buffer too until it is flushed, so the
database sees records in the order they were made. After a failure the database is not retried
for ``retry_interval`` seconds, so a down server costs one connect timeout, not one per node.

Reads that must see every record written so far (`metadata.reads`, what a run start, the
fingerprints and `millpond doctor` ask) go through the same connection and flush the buffer
first: while records remain buffered they raise `LedgerUnavailableError` instead of a stale
answer.

Errors that are not about reachability (a missing table, a bad value) are bugs and are raised.
"""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from loguru import logger

from millpond.metadata.buffer import RecordBuffer, ledger_identity
from millpond.metadata.db import CONNECT_TIMEOUT_S, normalize_url
from millpond.metadata.records import LedgerRecord, commit
from millpond.metadata.records.runs import RunOpening

STATEMENT_TIMEOUT_MS = 10_000

# Failures that mean "the ledger is not reachable right now": buffer and carry on.
_UNREACHABLE = (psycopg.OperationalError, psycopg.InterfaceError)
# Failures of one record's content while replaying: set it aside instead of blocking the rest.
_BAD_RECORD = (psycopg.DataError, psycopg.IntegrityError, ValueError, TypeError, KeyError)

R = TypeVar("R", bound=LedgerRecord)


class LedgerUnavailableError(RuntimeError):
    """A read needed the ledger database and it could not be reached."""


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

    # --- writes -----------------------------------------------------------------------------

    def write(self, record: LedgerRecord) -> bool:
        """Write one record now, or buffer it; True if it reached the database (a record with
        nothing in it writes nothing and is True)."""
        if not record.replayable:
            raise TypeError(f"a {type(record).__name__} is never buffered: use try_write")
        if record.empty:
            return True
        with self._lock:
            if isinstance(record, RunOpening):
                self._note_opening(record)
            if self._buffer.has_records() and self._flush_locked() is None:
                self._append(record)
                return False
            if time.monotonic() < self._retry_at:
                self._append(record)
                return False
            try:
                self._execute(record)
            except _UNREACHABLE as exc:
                self._went_down(exc)
                self._append(record)
                return False
            return True

    def try_write(self, record: LedgerRecord) -> Any | None:
        """Write a record now and return what its `write` returns, or None (never buffering it)
        when the database is unreachable or behind: for a record that is only true now (a
        heartbeat, `LeaseHeartbeat`)."""
        with self._lock:
            if self._buffer.has_records() or time.monotonic() < self._retry_at:
                return None
            try:
                return self._execute(record)
            except _UNREACHABLE as exc:
                self._went_down(exc)
                return None

    def _note_opening(self, record: RunOpening) -> None:
        """Remember when this Ledger queued or started a run, as the ledger does: a queued run
        starts when it is started (the answer of `opened_at` while the database is away)."""
        known = self._started.get(record.run_id)
        if record.queued:
            if known is None:
                self._started[record.run_id] = (record.at, True)
        elif known is None or known[1]:
            self._started[record.run_id] = (record.at, False)

    def opened_at(self, run_id: str) -> datetime | None:
        """When this Ledger queued or started the run (None: it did neither)."""
        known = self._started.get(run_id)
        return known[0] if known else None

    # --- reads (the queries themselves are in metadata.reads) --------------------------------

    def read(
        self, sql: str, params: tuple[Any, ...], *, behind_ok: bool = False
    ) -> list[tuple[Any, ...]]:
        """Rows of a query that must see every record written so far.

        Raises :class:`LedgerUnavailableError` when the database is down or records are still
        buffered (`behind_ok`: unless the caller merges the buffered ones itself): a stale
        answer would make changed data look unchanged."""
        return self._query(sql, params, behind_ok)[1]

    def read_dicts(self, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        """As :meth:`read`, each row a dict by column name."""
        names, rows = self._query(sql, params, False)
        return [dict(zip(names, row, strict=True)) for row in rows]

    def pending(self, kind: type[R], **match: Any) -> R | None:
        """The newest record of a kind whose fields include `match` still in the buffer after
        a try to flush it (None when everything reached the database)."""
        with self._lock:
            if self._buffer.has_records() and self._flush_locked() is None:
                return self._buffer.latest(kind, **match)
            return None

    def _query(
        self, sql: str, params: tuple[Any, ...], behind_ok: bool
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        with self._lock:
            if not behind_ok and self._buffer.has_records() and self._flush_locked() is None:
                raise LedgerUnavailableError("ledger records are still buffered")
            try:
                cur = self._connection().execute(sql, params)
                return [c.name for c in cur.description or []], list(cur.fetchall())
            except _UNREACHABLE as exc:
                self._went_down(exc)
                raise LedgerUnavailableError(f"ledger unreachable: {exc}") from exc

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

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            if time.monotonic() < self._retry_at:
                raise psycopg.OperationalError("ledger database marked down; retrying later")
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=self.connect_timeout)
            # A ledger write that waits on a lock must not hold a node up indefinitely.
            conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            self._conn = conn
        return self._conn

    def _execute(self, record: LedgerRecord) -> Any:
        return commit(self._connection(), record)

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

    def _append(self, record: LedgerRecord) -> None:
        self._buffer.append(record)
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
