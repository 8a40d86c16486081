"""Lake actions: partitions taken back (`millpond lake drop`) and re-landed or replayed
(`millpond backfill`), one row each, so the ledger says why a partition is gone or new.

Revision ID: 0003_lake_actions
Revises: 0002_statuses_and_leases
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_lake_actions"
down_revision: str | Sequence[str] | None = "0002_statuses_and_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATEMENTS = [
    """
    CREATE TABLE IF NOT EXISTS millpond.lake_actions (
        action_id text PRIMARY KEY,
        action text NOT NULL CHECK (action IN ('drop', 'reland', 'replay')),
        partition_id text NOT NULL,
        source text NOT NULL,
        table_name text NOT NULL,
        rows bigint,
        detail jsonb NOT NULL DEFAULT '{}'::jsonb,
        at timestamptz NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS lake_actions_partition ON millpond.lake_actions (partition_id)",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("millpond migrations are forward-only")
