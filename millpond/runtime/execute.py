"""The one execute path: every orchestrator runs a node through `run_node`.

The Prefect flow calls it in a thread per task; `millpond run-node` (what the generated Airflow
DAG runs) calls it in a process per task. Either way the node records its start, attempt,
duration, rows, bytes and error in the ledger, logs with its run_id and node_id, and raises
`NodeFailed` on failure so the orchestrator's retry and skip rules apply.

`millpond.runtime` and `millpond.cli` are the composition root: the only packages that wire
the kernel, the kinds and the orchestrators together.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from metadata.records import NodeFinished, NodeStarted, RunStarted
from millpond.core.locks import file_lock
from millpond.core.logs import logger, node_context
from millpond.core.masking import mask
from millpond.core.registry import NODE_KINDS, Settle
from millpond.core.runid import new_run_id as new_run_id  # where the CLI gets it
from millpond.nodes.extract import warnings as source_warnings
from millpond.runtime.context import RunContext
from millpond.runtime.damage import check_warehouse
from millpond.runtime.lifecycle import close_run, crash_flow_runs, open_run
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


def start_run(ctx: RunContext, trigger: str) -> None:
    """Open the run in the ledger with its lease (closing runs that died first) and pass on
    what the sources want the user to hear; then check the warehouse the ledger describes
    before any node trusts that bookkeeping (millpond.runtime.damage)."""
    crash_flow_runs(open_run(ctx, trigger))
    check_warehouse(ctx)
    for warning in source_warnings(ctx):
        logger.warning(warning)


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


class OrchestratorError(Exception):
    """The orchestrator itself failed (e.g. the Prefect API went away); the run is closed."""


class _FlowHooks:
    """What the Prefect flow calls back into: the one execute path, plus progress."""

    def __init__(self, ctx: RunContext, on_node_start: Callable[[str], None] | None) -> None:
        self.ctx = ctx
        self.on_node_start = on_node_start

    def run(self, node_id: str, attempt: int) -> NodeOutcome:
        if self.on_node_start:
            self.on_node_start(node_id)
        return run_node(self.ctx, node_id, attempt)

    def skip(self, node_id: str, reason: str) -> None:
        skip_node(self.ctx, node_id, reason)

    def flow_started(self, flow_run_id: str) -> None:
        self.ctx.flow_run_id = flow_run_id
        self.ctx.ledger.write(
            RunStarted(self.ctx.run_id, self.ctx.orchestrator, None, None, flow_run_id)
        )


def run_with_prefect(
    ctx: RunContext, trigger: str, on_node_start: Callable[[str], None] | None = None
) -> str:
    """Run the whole graph as one Prefect flow and close the run in the ledger whatever
    happens; returns the run's status.

    One run at a time per stack: a second run waits for the run lock, so its dbt nodes cannot
    rebuild marts that this run is about to test and publish.
    """
    from flows.pipeline import build_flow

    ctx.batch = True  # threads of one process: ready dbt nodes share one dbt build
    with file_lock(ctx.config.locks_dir / "run.lock", "run"):
        start_run(ctx, trigger)
        flow = build_flow(
            ctx.config.project,
            ctx.graph,
            _FlowHooks(ctx, on_node_start),
            ctx.config.prefect.concurrency,
        )
        try:
            state = flow(run_id=ctx.run_id, return_state=True)
        except (KeyboardInterrupt, SystemExit):
            finish_run(ctx, "interrupted (Ctrl-C or SIGTERM)")
            raise
        except Exception as exc:
            message = f"orchestrator error: {mask(str(exc))}"
            finish_run(ctx, message)
            raise OrchestratorError(message) from exc
        ctx.close()
        crashed = not (state.is_completed() or state.is_failed())
        return finish_run(ctx, "the flow crashed" if crashed else None)
