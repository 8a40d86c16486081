"""The open and close of a run whose nodes run as separate task processes (Airflow).

No process lives for the whole run, so the DAG has a first task (`millpond run-start`) that
opens the run with a task lease, and a last task (`millpond run-finish`, trigger rule
`all_done`) that reads what every node's task recorded in the ledger and closes the run with
its real status through the same `finish_run` as a Prefect run (notifications included). A
node whose task never ran (Airflow's upstream_failed, skipped) is recorded as skipped; a node
still `running` had its process killed (a timeout, a lost worker) and is recorded as failed.
"""

from __future__ import annotations

from millpond.metadata import reads
from millpond.metadata.ledger import LedgerUnavailableError
from millpond.metadata.records import NodeFinished
from millpond.runtime.context import RunContext
from millpond.runtime.damage import check_warehouse
from millpond.runtime.execute import NodeOutcome, finish_run, skip_node
from millpond.runtime.lifecycle import AIRFLOW_TRIGGERS, open_run

KILLED = "its task process ended without closing the node (killed, timed out or lost)"


def open_task_run(ctx: RunContext, run_type: str) -> None:
    """Open the run for its first task; `run_type` is the orchestrator's (Airflow's)."""
    # Airflow 3.3 renders `{{ dag_run.run_type }}` as the enum's name (`DagRunType.MANUAL`).
    value = run_type.rsplit(".", 1)[-1].lower()
    open_run(ctx, AIRFLOW_TRIGGERS.get(value, value or None), process=False)
    check_warehouse(ctx)  # a missing warehouse voids the fingerprints every task reads


def close_task_run(ctx: RunContext) -> str:
    """Close the run from the ledger's node records; returns its status."""
    try:
        latest = reads.latest_attempts(ctx.ledger, ctx.run_id)
    except LedgerUnavailableError as exc:
        return finish_run(ctx, f"cannot read the nodes' outcomes: {exc}")
    for node in ctx.graph.nodes:
        row = latest.get(node.id)
        if row is None:
            skip_node(ctx, node.id, "did not run: an upstream task failed or was skipped")
            continue
        outcome = NodeOutcome(
            node.id,
            row["status"],
            row["attempt"],
            row["duration_ms"] or 0,
            row["rows"],
            row["bytes"],
            row["error"],
        )
        if outcome.status in ("running", "abandoned"):
            outcome.status, outcome.error = "failed", outcome.error or KILLED
            ctx.ledger.write(
                NodeFinished(
                    ctx.run_id, node.id, outcome.attempt, "failed", None, error=outcome.error
                )
            )
        ctx.outcomes[node.id] = outcome
    return finish_run(ctx)
