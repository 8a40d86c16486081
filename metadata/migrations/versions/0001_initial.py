"""Initial ledger: runs, node runs, row counts, test results, partitions, source state.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Forward-only: the ledger is never downgraded; write a new revision to change it.
Timestamps are written by the client (``timestamptz``), not ``now()`` in the database, because
records buffered while the database was down are replayed later and must keep their real time.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATEMENTS = [
    "CREATE SCHEMA IF NOT EXISTS millpond",
    """
    CREATE TABLE millpond.runs (
        run_id       text PRIMARY KEY,
        orchestrator text,
        trigger      text,
        target       text,
        started_at   timestamptz NOT NULL DEFAULT now(),
        finished_at  timestamptz,
        status       text NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running', 'success', 'failed')),
        error        text,
        flow_run_id  text,
        summary      jsonb
    )
    """,
    "CREATE INDEX runs_started_at_idx ON millpond.runs (started_at DESC)",
    "CREATE INDEX runs_status_idx ON millpond.runs (status)",
    """
    CREATE TABLE millpond.node_runs (
        run_id      text NOT NULL REFERENCES millpond.runs (run_id) ON DELETE CASCADE,
        node_id     text NOT NULL,
        kind        text,
        attempt     integer NOT NULL DEFAULT 1,
        status      text NOT NULL
                    CHECK (status IN ('running', 'success', 'failed', 'skipped')),
        started_at  timestamptz,
        finished_at timestamptz,
        duration_ms bigint,
        rows        bigint,
        bytes       bigint,
        error       text,
        PRIMARY KEY (run_id, node_id, attempt)
    )
    """,
    # job_status and per-node history look nodes up across runs.
    "CREATE INDEX node_runs_node_id_idx ON millpond.node_runs (node_id)",
    """
    CREATE TABLE millpond.row_counts (
        run_id      text NOT NULL REFERENCES millpond.runs (run_id) ON DELETE CASCADE,
        relation    text NOT NULL,
        rows        bigint NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (run_id, relation)
    )
    """,
    "CREATE INDEX row_counts_relation_idx ON millpond.row_counts (relation)",
    """
    CREATE TABLE millpond.test_results (
        run_id      text NOT NULL REFERENCES millpond.runs (run_id) ON DELETE CASCADE,
        node_id     text,
        test        text NOT NULL,
        status      text NOT NULL
                    CHECK (status IN ('pass', 'fail', 'warn', 'error', 'skipped')),
        failures    bigint,
        message     text,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (run_id, test)
    )
    """,
    # partitions.run_id is deliberately not a foreign key: files may be landed outside a run
    # (a manual `millpond ingest`), and retention may prune old runs while partitions remain.
    """
    CREATE TABLE millpond.partitions (
        partition_id    text PRIMARY KEY,
        source          text NOT NULL,
        table_name      text NOT NULL,
        manifest_sha256 text,
        rows            bigint,
        bytes           bigint,
        landed_at       timestamptz NOT NULL DEFAULT now(),
        loaded_at       timestamptz,
        run_id          text
    )
    """,
    "CREATE INDEX partitions_source_table_idx ON millpond.partitions (source, table_name)",
    """
    CREATE INDEX partitions_unloaded_idx ON millpond.partitions (source, table_name)
        WHERE loaded_at IS NULL
    """,
    """
    CREATE TABLE millpond.source_state (
        source     text NOT NULL,
        table_name text NOT NULL,
        cursor     jsonb,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (source, table_name)
    )
    """,
    # Latest known status of every node: its most recent run (by run start), and within that
    # run its highest attempt, so a retried node shows the outcome of the retry.
    """
    CREATE VIEW millpond.job_status AS
    SELECT DISTINCT ON (nr.node_id)
        nr.node_id,
        nr.kind,
        nr.run_id,
        nr.attempt,
        nr.status,
        nr.started_at,
        nr.finished_at,
        nr.duration_ms,
        nr.rows,
        nr.bytes,
        nr.error
    FROM millpond.node_runs AS nr
    JOIN millpond.runs AS r USING (run_id)
    ORDER BY nr.node_id, r.started_at DESC, nr.run_id DESC, nr.attempt DESC
    """,
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("millpond migrations are forward-only")
