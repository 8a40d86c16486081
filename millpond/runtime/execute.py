"""The one execute path: every orchestrator runs a node through `run_node`.

The Prefect flow calls it in a thread per task; `millpond run-node` (what the generated Airflow
DAG runs) calls it in a process per task. Either way the node records its start, attempt,
duration, rows, bytes and error in the ledger, logs with its run_id and node_id, and raises
`NodeFailed` on failure so the orchestrator's retry and skip rules apply. `finish_run` closes a
run from its nodes' outcomes, however it ran (millpond.runtime.start for a whole run under
Prefect, millpond.runtime.task_run under Airflow).

`millpond.runtime` and `millpond.cli` are the composition root: the only packages that wire
the kernel, the kinds and the orchestrators together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from millpond.core.logs import logger, node_context
from millpond.core.masking import mask
from millpond.core.registry import NODE_KINDS, Settle
from millpond.metadata.records import NodeFinished, NodeStarted
from millpond.runtime.context import RunContext
from millpond.runtime.lifecycle import close_run
from millpond.runtime.totals import rows_loaded


class NodeFailed(Exception):
    """A node that did not succeed; the message is safe to show and store.

    `retryable` is False when running the node again cannot help (a malformed file, a failing
    data test), so orchestrators do not burn their retries and delays on it.
    """

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass
class NodeOutcome:
    """What a node did, as recorded in the ledger and shown in the summary."""

    node_id: str
    status: str
    attempt: int = 1
    duration_ms: int = 0
    rows: int | None = None
    bytes: int | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def run_node(
    ctx: RunContext, node_id: str, attempt: int = 1, work: Settle | None = None
) -> NodeOutcome:
    """Run one node of the graph and record it; raises NodeFailed when it fails.

    `work` stands in for the kind's run: what settles a node found up to date beforehand
    (millpond.runtime.nothing_new)."""
    node = ctx.graph.node(node_id)
    with node_context(ctx.run_id, node_id):
        ctx.ledger.write(NodeStarted(ctx.run_id, node_id, node.kind, attempt))
        started = time.perf_counter()
        outcome = NodeOutcome(node_id, "running", attempt)
        retryable = True
        ctx.running.add(node_id)
        try:
            if work is not None:
                work(outcome)
            else:
                NODE_KINDS.get(node.kind).run(ctx, node, outcome)
            if outcome.status == "running":  # a kind may say "unchanged" instead
                outcome.status = "success"
        except Exception as exc:
            # Kinds mark errors in the data itself (`retryable = False`): the same input
            # fails the same way on every attempt.
            retryable = bool(getattr(exc, "retryable", True))
            outcome.status = "failed"
            plain = hasattr(exc, "retryable")  # kinds' own errors say what and where already
            outcome.error = mask(str(exc) if plain else f"{type(exc).__name__}: {exc}")
            logger.error(f"failed (attempt {attempt}): {outcome.error}")
        finally:
            ctx.running.discard(node_id)
        outcome.duration_ms = int((time.perf_counter() - started) * 1000)
        ctx.ledger.write(
            NodeFinished(
                ctx.run_id,
                node_id,
                attempt,
                outcome.status,
                outcome.duration_ms,
                rows=outcome.rows,
                bytes=outcome.bytes,
                error=outcome.error,
            )
        )
        ctx.outcomes[node_id] = outcome
        if ctx.on_node_done:
            ctx.on_node_done(outcome)
        if outcome.status == "failed":
            raise NodeFailed(outcome.error or "failed", retryable=retryable)
        logger.info(f"{outcome.status} in {outcome.duration_ms} ms, rows={outcome.rows}")
        return outcome


def skip_node(ctx: RunContext, node_id: str, reason: str) -> None:
    """Record a node that did not run because something upstream failed."""
    node = ctx.graph.node(node_id)
    outcome = NodeOutcome(node_id, "skipped", 0, error=reason)
    with node_context(ctx.run_id, node_id):
        logger.warning(f"skipped: {reason}")
        ctx.ledger.write(NodeStarted(ctx.run_id, node_id, node.kind, 0))
        ctx.ledger.write(NodeFinished(ctx.run_id, node_id, 0, "skipped", 0, error=reason))
    ctx.outcomes[node_id] = outcome
    if ctx.on_node_done:
        ctx.on_node_done(outcome)


def finish_run(ctx: RunContext, error: str | None = None) -> str:
    """Close the run in the ledger; a run fails if any node failed or was skipped."""
    bad = [o for o in ctx.outcomes.values() if o.status in ("failed", "skipped")]
    missing = [n.id for n in ctx.graph.nodes if n.id not in ctx.outcomes]
    status = "failed" if error or bad or missing else "success"
    if status == "failed" and not error:
        failed = [o.node_id for o in ctx.outcomes.values() if o.status == "failed"]
        skipped = len(bad) - len(failed) + len(missing)
        error = f"failed nodes: {', '.join(failed) or '-'}; {skipped} nodes did not run"
    outcomes = list(ctx.outcomes.values())
    rows = rows_loaded(ctx.graph, outcomes)  # millpond.runtime.totals
    close_run(ctx.config, ctx.ledger, ctx.run_id, status, error, outcomes, rows)
    ctx.closed = status
    return status
