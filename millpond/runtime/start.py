"""A whole run from its start to its close: one choreography for `millpond run` and for a flow
run of the deployment `millpond ui` serves (`run_whole`).

In this order:
1. the run is in the ledger before anything slow or fallible: opened `running` with this
   process's lease (`millpond run`), or `queued` already (a flow run of the deployment, which
   turns `running` only once it holds the run lock, so a run waiting behind another shows as
   queued);
2. the stack's run lock, held to the end: one run at a time, so a second run's dbt nodes
   cannot rebuild the marts this one is testing and publishing;
3. under it the run is opened (`running`; runs whose lease is gone are closed `abandoned`
   first, millpond.runtime.lifecycle), a retry's nodes to rerun and to keep decided
   (millpond.runtime.retry), its graph built, the dbt sources no configured table
   loads named (millpond.runtime.wiring), the warehouse checked before the ledger's bookkeeping
   is trusted (millpond.runtime.damage), and the sources' warnings passed on;
4. a run with nothing new is settled without the orchestrator (millpond.runtime.nothing_new),
   unless it is a retry (it runs what it reruns) or it abandoned runs that died: their flow
   runs are marked crashed through the Prefect API, and the run goes to the orchestrator as
   always;
5. otherwise the graph runs as one flow run (an `Orchestrator`, millpond.runtime.flow_runs),
   and the run is closed whatever happens.

A failure before the graph runs closes the run `failed` with the reason, webhooks included
(`StartFailed`); a failure of the orchestrator itself closes it `failed` too
(`OrchestratorError`), and an interrupt (Ctrl-C, SIGTERM) as interrupted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from millpond.core.locks import run_lock
from millpond.core.logs import logger
from millpond.core.masking import mask
from millpond.nodes.extract import warnings as source_warnings
from millpond.runtime.context import RunContext
from millpond.runtime.damage import check_warehouse
from millpond.runtime.execute import finish_run
from millpond.runtime.flow_runs import FlowHooks
from millpond.runtime.lifecycle import crash_flow_runs, fail_start, open_run
from millpond.runtime.nothing_new import settle_if_nothing_new
from millpond.runtime.retry import plan as plan_retry
from millpond.runtime.wiring import warn_about_wiring


class StartFailed(Exception):
    """The run could not start; it is closed `failed` with this message, which is logged."""


class OrchestratorError(Exception):
    """The orchestrator itself failed (e.g. the Prefect API went away); the run is closed."""


class Orchestrator(Protocol):
    """Where the graph runs once the run has work (millpond.runtime.flow_runs)."""

    def connect(self) -> None:
        """Make the Prefect API reachable and set PREFECT_API_URL; called once the run is
        known to need it (a graph to run), not for a run with nothing new."""

    def run(self, hooks: FlowHooks) -> bool:
        """Run the graph as one flow run, every node through `hooks`; False when the flow run
        crashed (the nodes' outcomes then do not tell the whole story)."""


@dataclass(frozen=True)
class RunEnd:
    """How a run ended, for its caller's summary or flow-run state."""

    status: str  # the status the run was closed with: success or failed
    settled: bool  # nothing new: closed without a flow run, every node `unchanged`
    wiring: list[str] = field(default_factory=list)  # what millpond.runtime.wiring said


def run_whole(
    ctx: RunContext, trigger: str, orchestrator: Orchestrator, *, queued: bool = False
) -> RunEnd:
    """Start, run and close a whole run (see the module's docstring for the order).

    `queued`: the run is in the ledger as `queued` with this process's lease already (a flow
    run of the deployment) and is opened only once it holds the run lock. Raises `StartFailed`
    or `OrchestratorError` once the run is closed `failed`; an interrupt is re-raised."""
    with ExitStack() as starting, _closed_if_it_cannot_start(ctx):
        # The run's row and lease come before the slow parts of the start, so a run that
        # dies while starting (or waiting for the lock) is still seen, and closed by the next.
        abandoned = [] if queued else open_run(ctx, trigger)
        starting.enter_context(run_lock(ctx.config.locks_dir))
        abandoned += open_run(ctx, trigger)  # and the runs that died while this one waited
        if ctx.retry_of is not None:
            plan_retry(ctx)  # what it reruns and keeps (millpond.runtime.retry)
        wiring = _check(ctx)
        # After a crash the run goes to the orchestrator as always: the flow runs of the runs
        # it abandoned are marked crashed through the Prefect API. A retry runs what it reruns.
        nothing_new = not abandoned and ctx.retry_of is None
        settled = settle_if_nothing_new(ctx) if nothing_new else None
        if settled is None:
            orchestrator.connect()
            crash_flow_runs(abandoned)
        held = starting.pop_all()  # started: the run holds the lock until it is closed
    with held:
        if settled is not None:
            return RunEnd(settled, True, wiring)
        return RunEnd(_run_graph(ctx, orchestrator), False, wiring)


def _check(ctx: RunContext) -> list[str]:
    """The run's checks before anything runs; returns what the wiring check said."""
    wiring = warn_about_wiring(ctx, ctx.graph)
    check_warehouse(ctx)
    for warning in source_warnings(ctx):
        logger.warning(warning)
    return wiring


def _run_graph(ctx: RunContext, orchestrator: Orchestrator) -> str:
    """Run the graph through the orchestrator and close the run whatever happens."""
    ctx.batch = True  # the nodes are threads of one process: ready dbt nodes share a build
    try:
        ended = orchestrator.run(FlowHooks(ctx))
    except Exception as exc:
        message = f"orchestrator error: {mask(str(exc)) or type(exc).__name__}"
        finish_run(ctx, message)
        logger.error(message)
        raise OrchestratorError(message) from exc
    except BaseException:
        finish_run(ctx, "interrupted (Ctrl-C or SIGTERM)")
        raise
    ctx.close()  # a shared dbt build finishes what it still does in the background
    return finish_run(ctx, None if ended else "the flow crashed")


@contextmanager
def _closed_if_it_cannot_start(ctx: RunContext) -> Iterator[None]:
    """A failure while starting closes the run `failed` with the reason, secrets masked, and
    the webhooks are told; an interrupt is re-raised once the run is closed."""
    try:
        yield
    except BaseException as exc:
        message = f"cannot start the run: {mask(str(exc)) or type(exc).__name__}"
        fail_start(ctx, message)
        if not isinstance(exc, Exception):
            raise
        logger.error(message)
        raise StartFailed(message) from exc
