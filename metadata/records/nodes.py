"""Records of what a run's nodes did: attempts in `node_runs`, and what they built and tested
(`row_counts`, `test_results`, `model_fingerprints`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from millpond.metadata.records.base import LedgerRecord, check_one_of, ensure_run, now

NODE_FINAL_STATUSES = frozenset({"success", "failed", "skipped", "unchanged", "abandoned"})
TEST_STATUSES = frozenset({"pass", "fail", "warn", "error", "skipped"})


@dataclass(frozen=True)
class NodeStarted(LedgerRecord, op="node_started"):
    """An attempt of a node began (creating the run row if it is the first). A replayed
    "started" never turns a finished node back into "running"."""

    run_id: str
    node_id: str
    kind: str | None
    attempt: int = 1
    at: datetime = field(default_factory=now)

    def write(self, cur: psycopg.Cursor) -> None:
        ensure_run(cur, self.run_id, self.at)
        cur.execute(
            """
            INSERT INTO millpond.node_runs (run_id, node_id, kind, attempt, status, started_at)
            VALUES (%s, %s, %s, %s, 'running', %s)
            ON CONFLICT (run_id, node_id, attempt) DO UPDATE SET
                kind = COALESCE(node_runs.kind, EXCLUDED.kind),
                started_at = LEAST(node_runs.started_at, EXCLUDED.started_at)
            """,
            (self.run_id, self.node_id, self.kind, self.attempt, self.at),
        )


@dataclass(frozen=True)
class NodeFinished(LedgerRecord, op="node_finished"):
    """How an attempt of a node ended (`success`, `failed`, `skipped`, `unchanged`)."""

    run_id: str
    node_id: str
    attempt: int
    status: str
    duration_ms: int | None
    rows: int | None = None
    bytes: int | None = None
    error: str | None = None
    at: datetime = field(default_factory=now)

    def tidy(self) -> None:
        check_one_of("status", self.status, NODE_FINAL_STATUSES)
        if self.duration_ms is not None:
            self._set("duration_ms", int(self.duration_ms))

    def write(self, cur: psycopg.Cursor) -> None:
        ensure_run(cur, self.run_id, self.at)
        started = self.at - timedelta(milliseconds=self.duration_ms or 0)
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
            (
                self.run_id,
                self.node_id,
                self.attempt,
                self.status,
                started,
                self.at,
                self.duration_ms,
                self.rows,
                self.bytes,
                self.error,
            ),
        )


@dataclass(frozen=True)
class RowCounts(LedgerRecord, op="record_row_counts"):
    """The row count of each relation (model, table) after a run built it."""

    run_id: str
    counts: dict[str, int]
    at: datetime = field(default_factory=now)

    @property
    def empty(self) -> bool:
        return not self.counts

    def write(self, cur: psycopg.Cursor) -> None:
        ensure_run(cur, self.run_id, self.at)
        cur.executemany(
            """
            INSERT INTO millpond.row_counts (run_id, relation, rows, recorded_at)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (run_id, relation) DO UPDATE SET
                rows = EXCLUDED.rows, recorded_at = EXCLUDED.recorded_at
            """,
            [(self.run_id, relation, int(rows), self.at) for relation, rows in self.counts.items()],
        )


@dataclass(frozen=True)
class DataTestResults(LedgerRecord, op="record_test_results"):
    """Data test outcomes of a node: dicts with `test`, `status`, `failures`, `message`
    (any other key is dropped)."""

    run_id: str
    node_id: str | None
    results: list[dict[str, Any]]
    at: datetime = field(default_factory=now)

    def tidy(self) -> None:
        clean = []
        for result in self.results:
            check_one_of("test status", result["status"], TEST_STATUSES)
            clean.append(
                {
                    "test": str(result["test"]),
                    "status": result["status"],
                    "failures": result.get("failures"),
                    "message": result.get("message"),
                }
            )
        self._set("results", clean)

    @property
    def empty(self) -> bool:
        return not self.results

    def write(self, cur: psycopg.Cursor) -> None:
        ensure_run(cur, self.run_id, self.at)
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
                (
                    self.run_id,
                    self.node_id,
                    r["test"],
                    r["status"],
                    r["failures"],
                    r["message"],
                    self.at,
                )
                for r in self.results
            ],
        )


@dataclass(frozen=True)
class Fingerprints(LedgerRecord, op="record_fingerprints"):
    """What each dbt node's relation was built from, and its rows: node id -> (fingerprint
    or None, rows or None); a None fingerprint rebuilds the node next time."""

    run_id: str
    fingerprints: dict[str, tuple[str | None, int | None]]
    at: datetime = field(default_factory=now)

    def tidy(self) -> None:
        # A buffer line holds each pair as a JSON list: the record holds tuples either way.
        pairs = {node: (fp, rows) for node, (fp, rows) in self.fingerprints.items()}
        self._set("fingerprints", pairs)

    @property
    def empty(self) -> bool:
        return not self.fingerprints

    def write(self, cur: psycopg.Cursor) -> None:
        ensure_run(cur, self.run_id, self.at)
        cur.executemany(
            """
            INSERT INTO millpond.model_fingerprints
                (run_id, node_id, fingerprint, rows, recorded_at)
            VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (run_id, node_id) DO UPDATE SET
                fingerprint = EXCLUDED.fingerprint, rows = EXCLUDED.rows,
                recorded_at = EXCLUDED.recorded_at
            """,
            [
                (self.run_id, node, fp, rows, self.at)
                for node, (fp, rows) in self.fingerprints.items()
            ],
        )
