"""Files kept out of their table at landing, and files landed with bad rows set aside.

Revision ID: 0004_rejections
Revises: 0003_lake_actions
Create Date: 2026-12-02

- ``rejected_files``: one row per run, table and file content (fingerprint): ``outcome`` is
  ``rejected`` (nothing of the file landed: a contract break, a malformed file, too many bad
  rows) or ``quarantined`` (landed, ``bad_rows`` rows kept aside in the lake's quarantine/).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_rejections"
down_revision: str | Sequence[str] | None = "0003_lake_actions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATEMENTS = [
    """
    CREATE TABLE IF NOT EXISTS millpond.rejected_files (
        run_id      text NOT NULL,
        source      text NOT NULL,
        table_name  text NOT NULL,
        file        text NOT NULL,
        fingerprint text NOT NULL,
        outcome     text NOT NULL CHECK (outcome IN ('rejected', 'quarantined')),
        bad_rows    integer NOT NULL DEFAULT 0,
        reason      text NOT NULL,
        at          timestamptz NOT NULL,
        PRIMARY KEY (run_id, source, table_name, fingerprint)
    )
    """,
    "CREATE INDEX IF NOT EXISTS rejected_files_table ON millpond.rejected_files "
    "(source, table_name, at)",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("millpond migrations are forward-only")
