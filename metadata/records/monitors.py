"""Records of what the monitors found (`anomalies`): a volume anomaly of a source table or a
mart, a freshness alert of a source table (millpond.nodes.monitors)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from millpond.metadata.records.base import LedgerRecord, check_one_of, now

MONITORS = frozenset({"volume", "freshness"})
SUBJECT_KINDS = frozenset({"source_table", "mart"})
SEVERITIES = frozenset({"warn", "error"})


@dataclass(frozen=True)
class AnomalyFound(LedgerRecord, op="record_anomaly"):
    """One finding. Its id is the run's, the monitor's and the subject's (or, without a run,
    `millpond check-freshness`'s time), so a retried node or a replayed line writes it once."""

    run_id: str | None
    monitor: str
    subject_kind: str
    subject: str
    severity: str
    message: str
    observed: int | None = None
    low: float | None = None
    high: float | None = None
    median: float | None = None
    mad: float | None = None
    history: int | None = None
    last_landed_at: datetime | None = None
    expect_every_seconds: float | None = None
    at: datetime = field(default_factory=now)
    anomaly_id: str = ""

    def tidy(self) -> None:
        check_one_of("monitor", self.monitor, MONITORS)
        check_one_of("subject kind", self.subject_kind, SUBJECT_KINDS)
        check_one_of("severity", self.severity, SEVERITIES)
        if not self.anomaly_id:
            scope = self.run_id or f"check@{self.at.isoformat()}"
            self._set("anomaly_id", f"{scope}/{self.monitor}/{self.subject}")

    def summary(self) -> dict[str, Any]:
        """What a webhook, the run's ledger summary and the CLI say about it."""
        return {
            "monitor": self.monitor,
            "subject_kind": self.subject_kind,
            "subject": self.subject,
            "severity": self.severity,
            "message": self.message,
            "observed": self.observed,
            "low": self.low,
            "high": self.high,
            "last_landed_at": None if self.last_landed_at is None else str(self.last_landed_at),
        }

    def write(self, cur: psycopg.Cursor) -> None:
        cur.execute(
            """
            INSERT INTO millpond.anomalies (anomaly_id, run_id, monitor, subject_kind, subject,
                severity, observed, low, high, median, mad, history, last_landed_at,
                expect_every_seconds, message, at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (anomaly_id) DO UPDATE SET
                severity = EXCLUDED.severity, observed = EXCLUDED.observed,
                low = EXCLUDED.low, high = EXCLUDED.high, median = EXCLUDED.median,
                mad = EXCLUDED.mad, history = EXCLUDED.history,
                last_landed_at = EXCLUDED.last_landed_at,
                expect_every_seconds = EXCLUDED.expect_every_seconds,
                message = EXCLUDED.message, at = EXCLUDED.at
            """,
            (
                self.anomaly_id,
                self.run_id,
                self.monitor,
                self.subject_kind,
                self.subject,
                self.severity,
                self.observed,
                self.low,
                self.high,
                self.median,
                self.mad,
                self.history,
                self.last_landed_at,
                self.expect_every_seconds,
                self.message,
                self.at,
            ),
        )
