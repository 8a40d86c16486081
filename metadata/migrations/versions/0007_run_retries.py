"""Retries: a run that reruns the failed nodes of an earlier one says which.

Revision ID: 0007_run_retries
Revises: 0006_queued_runs
Create Date: 2026-12-04

``retry_of`` is the run a retry (`millpond retry`, ``POST /runs/{id}/retry``) reruns the
failed, skipped and not-run nodes of; a retry of a retry points at the retry. ``options`` is
what a run was asked for beyond the whole graph (``select``, ``exclude``, ``full_refresh``),
so a retry reruns the part of the graph its run had, with the same options.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_run_retries"
down_revision: str | Sequence[str] | None = "0006_queued_runs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATEMENTS = [
    "ALTER TABLE millpond.runs ADD COLUMN IF NOT EXISTS retry_of text",
    "ALTER TABLE millpond.runs ADD COLUMN IF NOT EXISTS options jsonb",
    "CREATE INDEX IF NOT EXISTS runs_retry_of ON millpond.runs (retry_of)",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("millpond migrations are forward-only")
