"""Queued runs: a run is in the ledger from the moment it is asked for.

Revision ID: 0006_queued_runs
Revises: 0005_model_fingerprints
Create Date: 2026-12-04

`POST /runs` and a flow run of the deployment (schedule, UI) record the run as ``queued``
before anything can fail (config, run lock, Prefect); the run turns ``running`` when it opens
and is closed ``failed`` with the reason when it cannot start. ``queued_at`` is when it was
asked for; ``started_at`` becomes the moment it opened, so a run's duration
(``finished_at - started_at``) is its own, not the wait in front of it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_queued_runs"
down_revision: str | Sequence[str] | None = "0005_model_fingerprints"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATEMENTS = [
    "ALTER TABLE millpond.runs DROP CONSTRAINT IF EXISTS runs_status_check",
    """
    ALTER TABLE millpond.runs ADD CONSTRAINT runs_status_check
        CHECK (status IN ('queued', 'running', 'success', 'failed', 'abandoned'))
    """,
    "ALTER TABLE millpond.runs ADD COLUMN IF NOT EXISTS queued_at timestamptz",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("millpond migrations are forward-only")
