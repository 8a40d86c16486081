"""Model fingerprints: what each dbt node's relation in the warehouse was built from.

Revision ID: 0005_model_fingerprints
Revises: 0004_rejections
Create Date: 2026-12-02

One row per run and dbt node that ran (built, failed or found unchanged). ``fingerprint`` is a
hash of the model's code, config, parents' fingerprints and the raw partitions it reads; NULL
when the run left the relation in a state nobody can vouch for (a build or a test failed), so
the next run rebuilds it. ``rows`` is the relation's row count after the run, which an
unchanged node reports again without opening the warehouse.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_model_fingerprints"
down_revision: str | Sequence[str] | None = "0004_rejections"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATEMENTS = [
    """
    CREATE TABLE IF NOT EXISTS millpond.model_fingerprints (
        run_id      text NOT NULL REFERENCES millpond.runs (run_id) ON DELETE CASCADE,
        node_id     text NOT NULL,
        fingerprint text,
        rows        bigint,
        recorded_at timestamptz NOT NULL,
        PRIMARY KEY (run_id, node_id)
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS model_fingerprints_node_idx
        ON millpond.model_fingerprints (node_id, recorded_at DESC)
    """,
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("millpond migrations are forward-only")
