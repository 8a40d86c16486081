"""Records of the lake's bookkeeping: partitions landed and loaded (`partitions`), source
cursors (`source_state`), partitions taken back or re-landed (`lake_actions`) and files kept
out of their table (`rejected_files`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from millpond.metadata.records.base import LedgerRecord, as_jsonb, check_one_of, now

LAKE_ACTIONS = frozenset({"drop", "reland", "replay"})
REJECTION_OUTCOMES = frozenset({"rejected", "quarantined"})


@dataclass(frozen=True)
class PartitionLanded(LedgerRecord, op="record_partition"):
    """A partition landed in the lake. Re-landing it with a different manifest means its
    content changed: it must be loaded again, so `loaded_at` is cleared; the same manifest
    keeps its loaded state."""

    source: str
    table: str
    partition_id: str
    manifest_sha256: str | None
    rows: int | None
    bytes: int | None
    landed_at: datetime = field(default_factory=now)
    run_id: str | None = None

    def write(self, cur: psycopg.Cursor) -> None:
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
            (
                self.partition_id,
                self.source,
                self.table,
                self.manifest_sha256,
                self.rows,
                self.bytes,
                self.landed_at,
                self.run_id,
            ),
        )


@dataclass(frozen=True)
class PartitionLoaded(LedgerRecord, op="mark_partition_loaded"):
    """A landed partition is now in the warehouse."""

    partition_id: str
    loaded_at: datetime = field(default_factory=now)

    def write(self, cur: psycopg.Cursor) -> None:
        cur.execute(
            "UPDATE millpond.partitions SET loaded_at = %s WHERE partition_id = %s",
            (self.loaded_at, self.partition_id),
        )


@dataclass(frozen=True)
class SourceState(LedgerRecord, op="set_source_state"):
    """The incremental cursor (any JSON value) of a source table."""

    source: str
    table: str
    cursor: Any
    at: datetime = field(default_factory=now)

    def write(self, cur: psycopg.Cursor) -> None:
        cur.execute(
            """
            INSERT INTO millpond.source_state (source, table_name, cursor, updated_at)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (source, table_name) DO UPDATE SET
                cursor = EXCLUDED.cursor, updated_at = EXCLUDED.updated_at
            """,
            (self.source, self.table, as_jsonb(self.cursor), self.at),
        )


@dataclass(frozen=True)
class LakeAction(LedgerRecord, op="record_lake_action"):
    """A partition taken back (`drop`), or re-landed / replayed by a backfill. A dropped
    partition is no longer in the lake: its `partitions` row goes with it (a re-landed one
    is recorded again by `PartitionLanded`)."""

    action: str
    partition_id: str
    source: str
    table: str
    rows: int | None = None
    detail: dict[str, Any] | None = None
    action_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    at: datetime = field(default_factory=now)

    def tidy(self) -> None:
        check_one_of("lake action", self.action, LAKE_ACTIONS)
        if self.detail is None:
            self._set("detail", {})

    def write(self, cur: psycopg.Cursor) -> None:
        cur.execute(
            """
            INSERT INTO millpond.lake_actions
                (action_id, action, partition_id, source, table_name, rows, detail, at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (action_id) DO NOTHING
            """,
            (
                self.action_id,
                self.action,
                self.partition_id,
                self.source,
                self.table,
                self.rows,
                as_jsonb(self.detail),
                self.at,
            ),
        )
        if self.action == "drop":
            cur.execute(
                "DELETE FROM millpond.partitions WHERE partition_id = %s", (self.partition_id,)
            )


@dataclass(frozen=True)
class Rejection(LedgerRecord, op="record_rejection"):
    """A file kept out of its table at landing (`rejected`), or landed with bad rows set
    aside (`quarantined`)."""

    run_id: str
    source: str
    table: str
    file: str
    fingerprint: str
    reason: str
    outcome: str = "rejected"
    bad_rows: int = 0
    at: datetime = field(default_factory=now)

    def tidy(self) -> None:
        check_one_of("outcome", self.outcome, REJECTION_OUTCOMES)

    def write(self, cur: psycopg.Cursor) -> None:
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
            (
                self.run_id,
                self.source,
                self.table,
                self.file,
                self.fingerprint,
                self.outcome,
                self.bad_rows,
                self.reason,
                self.at,
            ),
        )
