"""A retry: a new run that reruns what an earlier run did not finish, and keeps the rest.

`millpond retry [RUN|last]` and `POST /runs/{id}/retry` start it through the same paths as a
run (`millpond run`, a flow run of the deployment); the new run records `retry_of` (the run
it retries) and runs the same part of the graph with the same options (`--select`,
`--exclude`, `--full-refresh`, as that run's ledger row has them).

What reruns: every node of the graph whose latest attempt in the retried run did not succeed
(failed, skipped, abandoned, or never started: a run that died mid-way, a node new to the
graph), with all its descendants. Every other node is kept as that run left it: recorded
`unchanged` through the one execute path without running (millpond.runtime.execute), so an
upstream model is not rebuilt, an extract lands nothing new, and its kind records what it
holds (a dbt node carries its fingerprint and rows forward, so the next run still finds it
up to date). The dbt nodes that rerun are built as in any run: under the Prefect flow the
failed model and its descendants share one dbt build. A retry is never settled as "nothing
new" before the orchestrator: it runs the nodes it reruns.
"""

from __future__ import annotations

from typing import Any

from millpond.core.logs import logger
from millpond.metadata import reads
from millpond.metadata.retries import FINISHED_NODE, RetryRefused, check_retryable
from millpond.runtime.context import RunContext

__all__ = ["RetryRefused", "adopt", "find_run", "plan"]


def find_run(ctx: RunContext, spec: str) -> dict[str, Any]:
    """The ledger's row of the run `spec` names (`last`: the latest run), checked to be one a
    retry can rerun; RetryRefused otherwise."""
    if spec == "last":
        rows = ctx.ledger.read_dicts(
            "SELECT run_id FROM millpond.runs ORDER BY started_at DESC, run_id DESC LIMIT 1", ()
        )
        if not rows:
            raise RetryRefused("no runs in the ledger yet: nothing to retry", unknown=True)
        spec = rows[0]["run_id"]
    rows = ctx.ledger.read_dicts(
        "SELECT run_id, status, target, options, retry_of FROM millpond.runs WHERE run_id = %s",
        (spec,),
    )
    run = rows[0] if rows else None
    check_retryable(spec, run)
    assert run is not None
    return run


def adopt(ctx: RunContext, run: dict[str, Any]) -> None:
    """Make `ctx` (a run not started yet) the retry of `run` (as `find_run` returned it): the
    same part of the graph, the same options."""
    options = run.get("options") or {}
    ctx.retry_of = run["run_id"]
    ctx.select = tuple(options.get("select") or ())
    ctx.exclude = tuple(options.get("exclude") or ())
    ctx.full_refresh = bool(options.get("full_refresh"))


def plan(ctx: RunContext) -> None:
    """Decide what the retry reruns and keeps (`ctx.keep`), once the run holds the run lock
    (the retried run cannot change any more): see the module's docstring."""
    assert ctx.retry_of is not None
    check_retryable(ctx.retry_of, _run(ctx, ctx.retry_of))
    attempts = reads.latest_attempts(ctx.ledger, ctx.retry_of)
    graph = ctx.graph
    unfinished = {
        n.id for n in graph.nodes if (attempts.get(n.id) or {}).get("status") not in FINISHED_NODE
    }
    rerun = set(unfinished)
    for node_id in unfinished:
        rerun |= graph.downstream(node_id)
    ctx.keep = frozenset(n.id for n in graph.nodes if n.id not in rerun)
    rerun_ids = [n.id for n in graph.nodes if n.id in rerun]
    logger.info(
        f"retry of run {ctx.retry_of}: rerunning {len(rerun_ids)} nodes "
        f"({', '.join(rerun_ids) or 'none'}); keeping {len(ctx.keep)} as that run left them"
    )


def _run(ctx: RunContext, run_id: str) -> dict[str, Any] | None:
    rows = ctx.ledger.read_dicts(
        "SELECT run_id, status FROM millpond.runs WHERE run_id = %s", (run_id,)
    )
    return rows[0] if rows else None
