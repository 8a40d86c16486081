"""The one execute path: every orchestrator runs a node through `run_node`.

The Prefect flow calls it in a thread per task; `millpond run-node` (what the generated Airflow
DAG runs) calls it in a process per task. Either way the node records its start, attempt,
duration, rows, bytes and error in the ledger, logs with its run_id and node_id, and raises
`NodeFailed` on failure so the orchestrator's retry and skip rules apply.

This module and `millpond.cli` are the composition root: the only places that import the
ingest, metadata, transform (dbt) and publish pieces together.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ingest.formats import SourceFileError
from ingest.lake import Lake
from ingest.landing import land_table, unclaimed_files
from ingest.loading import LoadError, load_table, raw_row_count, raw_table_name
from metadata.db import migrate, resolve_url
from metadata.ledger import Ledger
from millpond.config import MillpondConfig
from millpond.dbt_runner import DbtProject
from millpond.graph import Graph, Node, build_graph
from millpond.locks import file_lock
from millpond.logs import logger, node_context
from millpond.masking import mask
from millpond.publish import publish
from millpond.warehouse import open_warehouse, warehouse_lock


class NodeFailed(Exception):
    """A node that did not succeed; the message is safe to show and store.

    `retryable` is False when running the node again cannot help (a malformed file, a failing
    data test), so orchestrators do not burn their retries and delays on it.
    """

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


# Errors in the data itself: the same input fails the same way on every attempt.
PERMANENT_ERRORS: tuple[type[Exception], ...] = (SourceFileError, LoadError)


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


def new_run_id() -> str:
    """Sortable and unique: UTC time plus a random suffix."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclass
class RunContext:
    """Everything a node of one run needs; cheap to build, parts opened on first use."""

    config: MillpondConfig
    run_id: str
    orchestrator: str = "prefect"
    flow_run_id: str | None = None
    sources_only: bool = False
    outcomes: dict[str, NodeOutcome] = field(default_factory=dict)
    on_node_done: Callable[[NodeOutcome], None] | None = None

    @cached_property
    def ledger(self) -> Ledger:
        # An embedded server stays up between runs (like the Prefect server) until `just down`:
        # stopping and restarting it per command is slower and races with the next command.
        url = resolve_url(self.config.metadata.url, self.config.state, keep_running=True)
        try:
            migrate(url)
        except Exception as exc:  # the run goes on; the ledger buffers locally
            logger.warning(f"metadata database unavailable, buffering records: {mask(str(exc))}")
        ledger = Ledger(url, self.config.state / "ledger-buffer.jsonl")
        ledger.flush_buffer()
        return ledger

    @cached_property
    def dbt(self) -> DbtProject:
        return DbtProject(self.config)

    @cached_property
    def lake(self) -> Lake:
        return Lake.from_config(self.config)

    @cached_property
    def graph(self) -> Graph:
        """The whole graph; for a single extract or load node (`sources_only`), the part that
        needs no dbt parse, which is what makes those Airflow tasks start fast."""
        return build_graph(self.config, None if self.sources_only else self.dbt.parse())


def run_node(ctx: RunContext, node_id: str, attempt: int = 1) -> NodeOutcome:
    """Run one node of the graph and record it; raises NodeFailed when it fails."""
    node = ctx.graph.node(node_id)
    with node_context(ctx.run_id, node_id):
        ctx.ledger.node_started(ctx.run_id, node_id, node.kind, attempt)
        started = time.perf_counter()
        outcome = NodeOutcome(node_id, "running", attempt)
        retryable = True
        try:
            HANDLERS[node.kind](ctx, node, outcome)
            outcome.status = "success"
        except Exception as exc:
            retryable = getattr(exc, "retryable", not isinstance(exc, PERMANENT_ERRORS))
            outcome.status = "failed"
            outcome.error = mask(
                f"{type(exc).__name__}: {exc}" if not isinstance(exc, NodeFailed) else str(exc)
            )
            logger.error(f"failed (attempt {attempt}): {outcome.error}")
        outcome.duration_ms = int((time.perf_counter() - started) * 1000)
        ctx.ledger.node_finished(
            ctx.run_id,
            node_id,
            attempt,
            outcome.status,
            outcome.duration_ms,
            rows=outcome.rows,
            bytes=outcome.bytes,
            error=outcome.error,
        )
        ctx.outcomes[node_id] = outcome
        if ctx.on_node_done:
            ctx.on_node_done(outcome)
        if outcome.status == "failed":
            raise NodeFailed(outcome.error or "failed", retryable=retryable)
        logger.info(f"done in {outcome.duration_ms} ms, rows={outcome.rows}")
        return outcome


def skip_node(ctx: RunContext, node_id: str, reason: str) -> None:
    """Record a node that did not run because something upstream failed."""
    node = ctx.graph.node(node_id)
    outcome = NodeOutcome(node_id, "skipped", 0, error=reason)
    with node_context(ctx.run_id, node_id):
        logger.warning(f"skipped: {reason}")
        ctx.ledger.node_started(ctx.run_id, node_id, node.kind, 0)
        ctx.ledger.node_finished(ctx.run_id, node_id, 0, "skipped", 0, error=reason)
    ctx.outcomes[node_id] = outcome
    if ctx.on_node_done:
        ctx.on_node_done(outcome)


def _extract(ctx: RunContext, node: Node, outcome: NodeOutcome) -> None:
    source_name, table = node.params["source"], node.params["table"]
    source = ctx.config.sources[source_name]
    inbox = ctx.config.resolve(source.path)
    # Two runs at once must not both land the same new file: check-and-land is exclusive per
    # table (on this machine; shared mode across machines needs the catalog, a later issue).
    lock = ctx.config.locks_dir / f"extract.{source_name}.{table}.lock"
    with file_lock(lock, f"extract {source_name}.{table}"):
        result = land_table(ctx.lake, source_name, source, inbox, table, ctx.run_id)
    outcome.rows, outcome.bytes = result.rows, result.bytes
    outcome.detail = {"skipped_files": result.skipped}
    if result.manifest is not None:
        m = result.manifest
        ctx.ledger.record_partition(
            source_name,
            table,
            m.partition_id,
            m.sha256,
            m.rows,
            m.bytes,
            dt.datetime.fromisoformat(m.landed_at),
            ctx.run_id,
        )
        outcome.detail["partition"] = m.partition_id


def _load(ctx: RunContext, node: Node, outcome: NodeOutcome) -> None:
    source_name, table = node.params["source"], node.params["table"]
    schema = ctx.config.warehouse.raw_schema
    with open_warehouse(ctx.config.warehouse_path) as con:
        result = load_table(con, ctx.lake, schema, source_name, table)
        total = raw_row_count(con, schema, source_name, table)
    for m in result.partitions:
        ctx.ledger.mark_partition_loaded(m.partition_id)
    ctx.ledger.record_row_counts(
        ctx.run_id, {f"{schema}.{raw_table_name(source_name, table)}": total}
    )
    outcome.rows, outcome.bytes = result.rows, result.bytes
    outcome.detail = {
        "partitions": [m.partition_id for m in result.partitions],
        "table_rows": total,
    }


def _dbt(ctx: RunContext, node: Node, outcome: NodeOutcome) -> None:
    warehouse = ctx.config.warehouse_path
    with warehouse_lock(warehouse):
        build = ctx.dbt.build(node.params["select"])
        relation = node.params.get("relation")
        if build.success and relation and node.params.get("resource_type") != "test":
            with open_warehouse(warehouse) as con:
                row = con.execute(f"select count(*) from {relation}").fetchone()
            outcome.rows = int(row[0]) if row else 0
            ctx.ledger.record_row_counts(ctx.run_id, {relation: outcome.rows})
    tests = [
        {"test": t.name, "status": t.status, "failures": t.failures, "message": t.message}
        for t in build.tests
    ]
    if tests:
        ctx.ledger.record_test_results(ctx.run_id, node.id, tests)
    outcome.detail = {"tests": tests}
    if not build.success:
        raise NodeFailed(build.failure_message(), retryable=build.error is not None)


def _publish(ctx: RunContext, node: Node, outcome: NodeOutcome) -> None:
    cfg = ctx.config
    result = publish(
        cfg.warehouse_path, cfg.published_dir, ctx.run_id, cfg.publish.schemas, cfg.publish.keep
    )
    outcome.rows = result.rows
    outcome.bytes = result.path.stat().st_size
    outcome.detail = {"snapshot": str(result.path), "tables": result.tables}


HANDLERS: dict[str, Callable[[RunContext, Node, NodeOutcome], None]] = {
    "extract": _extract,
    "load": _load,
    "dbt": _dbt,
    "publish": _publish,
}


def start_run(ctx: RunContext, trigger: str) -> None:
    """Open the run in the ledger and warn about inbox files nobody claims."""
    target = ctx.config.warehouse.target
    ctx.ledger.start_run(ctx.run_id, ctx.orchestrator, trigger, target)
    for name, source in ctx.config.sources.items():
        for path in unclaimed_files(ctx.config.resolve(source.path), source):
            logger.warning(f"{name}: {path.name} matches no table of the source; not landed")


def finish_run(ctx: RunContext, error: str | None = None) -> str:
    """Close the run in the ledger; a run fails if any node failed or was skipped."""
    bad = [o for o in ctx.outcomes.values() if o.status in ("failed", "skipped")]
    missing = [n.id for n in ctx.graph.nodes if n.id not in ctx.outcomes]
    status = "failed" if error or bad or missing else "success"
    if status == "failed" and not error:
        failed = [o.node_id for o in ctx.outcomes.values() if o.status == "failed"]
        skipped = len(bad) - len(failed) + len(missing)
        error = f"failed nodes: {', '.join(failed) or '-'}; {skipped} nodes did not run"
    summary = {
        "nodes": {o.node_id: o.status for o in ctx.outcomes.values()},
        "rows": sum(o.rows or 0 for o in ctx.outcomes.values()),
    }
    ctx.ledger.finish_run(ctx.run_id, status, error=error, summary=summary)
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
        self.ctx.ledger.start_run(self.ctx.run_id, self.ctx.orchestrator, None, None, flow_run_id)


def run_with_prefect(
    ctx: RunContext, trigger: str, on_node_start: Callable[[str], None] | None = None
) -> str:
    """Run the whole graph as one Prefect flow and close the run in the ledger whatever
    happens; returns the run's status.

    One run at a time per stack: a second run waits for the run lock, so its dbt nodes cannot
    rebuild marts that this run is about to test and publish.
    """
    from flows.pipeline import build_flow

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
        crashed = not (state.is_completed() or state.is_failed())
        return finish_run(ctx, "the flow crashed" if crashed else None)
