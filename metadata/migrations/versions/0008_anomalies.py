"""Anomalies: volume anomalies and freshness alerts computed from the ledger.

Revision ID: 0008_anomalies
Revises: 0006_queued_runs
Create Date: 2026-12-04

- ``anomalies``: one row per finding. ``monitor`` is ``volume`` (a row count outside the band
  of its history: ``observed`` against ``low``..``high``, with the history's ``median``,
  ``mad`` and size ``history``) or ``freshness`` (a source table with no landing since
  ``last_landed_at`` for longer than ``expect_every_seconds``). ``subject_kind`` says what
  ``subject`` names: a source table (``source.table``) or a mart (``schema.name``).
  ``run_id`` is the run that found it, or null for ``millpond check-freshness``.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_anomalies"
down_revision: str | Sequence[str] | None = "0007_run_retries"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATEMENTS = [
    """
    CREATE TABLE IF NOT EXISTS millpond.anomalies (
        anomaly_id           text PRIMARY KEY,
        run_id               text,
        monitor              text NOT NULL CHECK (monitor IN ('volume', 'freshness')),
        subject_kind         text NOT NULL CHECK (subject_kind IN ('source_table', 'mart')),
        subject              text NOT NULL,
        severity             text NOT NULL CHECK (severity IN ('warn', 'error')),
        observed             bigint,
        low                  double precision,
        high                 double precision,
        median               double precision,
        mad                  double precision,
        history              integer,
        last_landed_at       timestamptz,
        expect_every_seconds double precision,
        message              text NOT NULL,
        at                   timestamptz NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS anomalies_run ON millpond.anomalies (run_id)",
    "CREATE INDEX IF NOT EXISTS anomalies_at ON millpond.anomalies (at DESC)",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("millpond migrations are forward-only")
