"""Where a whole run's graph runs: one Prefect flow run whose task runs are the nodes.

`millpond run` makes a flow run of its own (`NewFlowRun`), on the Prefect server it starts only
once the run turns out to need one: a run with nothing new is settled without it, and Prefect
is not even imported (millpond.runtime.start). A flow run of the deployment `millpond ui`
serves is that flow run already (`CurrentFlowRun`): Prefect's runner started it. Either way the
flow calls back into the one execute path through `FlowHooks`, and both share
`flows.pipeline.run_in_flow`, so a run is never a flow run starting another one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from millpond.core.config import MillpondConfig
from millpond.metadata.records import RunStarted
from millpond.runtime.context import RunContext
from millpond.runtime.execute import NodeOutcome, run_node, skip_node


@dataclass
class FlowHooks:
    """What the Prefect flow calls back into (flows.pipeline.GraphHooks): the one execute
    path, and `on_node_start` for a progress display."""

    ctx: RunContext
    on_node_start: Callable[[str], None] | None = None

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


class NewFlowRun:
    """`millpond run`: a flow of the project's name whose one flow run is this run, on the
    configured Prefect API or the local server started (or reused) on first need."""

    def __init__(self, config: MillpondConfig) -> None:
        self.config = config
        self.api: str | None = None  # the Prefect API, once connected

    def connect(self) -> None:
        if self.api is None:
            from millpond.flows.server import ensure_server

            self.api = ensure_server(self.config)
            os.environ["PREFECT_API_URL"] = self.api

    def run(self, hooks: FlowHooks) -> bool:
        """Run the graph as the flow's one flow run; False when the flow run crashed."""
        from millpond.flows.pipeline import build_flow

        ctx = hooks.ctx
        flow = build_flow(ctx.config.project, ctx.graph, hooks, ctx.config.prefect.concurrency)
        state = flow(run_id=ctx.run_id, return_state=True)
        return bool(state.is_completed() or state.is_failed())


class CurrentFlowRun:
    """A flow run of the deployment, running now in the process Prefect's runner started:
    its API is known already, and the graph's nodes become its task runs."""

    def connect(self) -> None:
        """Nothing to do: the runner set the Prefect API for its flow run."""

    def run(self, hooks: FlowHooks) -> bool:
        from millpond.flows.pipeline import run_in_flow

        run_in_flow(hooks.ctx.run_id, hooks.ctx.graph, hooks)
        return True
