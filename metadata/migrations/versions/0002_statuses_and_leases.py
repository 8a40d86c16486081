"""Run and node statuses for the run lifecycle and for skipped rebuilds; a lease per run.

Revision ID: 0002_statuses_and_leases
Revises: 0001
Create Date: 2026-12-02

- ``abandoned``: a run (and its node runs) whose process died (SIGKILL, power loss), closed
  by the next start that finds its lease expired.
- ``unchanged``: a model node not rebuilt because its fingerprint equals the published run's.
- ``host``, ``pid``, ``heartbeat_at`` on runs: the lease that tells a live run from a dead one.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_statuses_and_leases"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATEMENTS = [
    "ALTER TABLE millpond.runs DROP CONSTRAINT IF EXISTS runs_status_check",
    """
    ALTER TABLE millpond.runs ADD CONSTRAINT runs_status_check
        CHECK (status IN ('running', 'success', 'failed', 'abandoned'))
    """,
    "ALTER TABLE millpond.node_runs DROP CONSTRAINT IF EXISTS node_runs_status_check",
    """
    ALTER TABLE millpond.node_runs ADD CONSTRAINT node_runs_status_check
        CHECK (status IN ('running', 'success', 'failed', 'skipped', 'unchanged', 'abandoned'))
    """,
    "ALTER TABLE millpond.runs ADD COLUMN IF NOT EXISTS host text",
    "ALTER TABLE millpond.runs ADD COLUMN IF NOT EXISTS pid integer",
    "ALTER TABLE millpond.runs ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("millpond migrations are forward-only")
