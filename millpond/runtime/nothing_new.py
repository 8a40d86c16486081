"""A run with nothing new is settled before the orchestrator starts.

Starting Prefect costs more than everything such a run does: importing it takes about 2 s and
a flow run with a task per node 1-3 s more, while finding that no file is new, every landed
partition is loaded, every model's fingerprint is the published run's and readers already
have those marts takes well under a second. So a run first asks every node of its graph
whether it is up to date (`NodeKind.up_to_date`, which has no side effects). Only when all of
them are is the run settled here: each node recorded as `unchanged` through the one execute
path (ledger, logs, summary and notifications as ever), the run closed, no flow run.

One node that would do something, one kind that cannot tell (a SQL source must query to
know), or a warehouse that is missing or damaged, and the run goes to the orchestrator as
always. The checks' per-run resources are dropped first: the real run computes fingerprints
afresh, after its own loads.
"""

from __future__ import annotations

from millpond.core.logs import logger
from millpond.core.registry import NODE_KINDS, Settle
from millpond.runtime.context import RunContext
from millpond.runtime.damage import check_warehouse
from millpond.runtime.execute import finish_run, run_node


def settle_if_nothing_new(ctx: RunContext) -> str | None:
    """The run's status if it had nothing to do and is closed now; None when it must run.

    The run start calls it (millpond.runtime.start) once the run is open in the ledger, under
    the run lock (a run going on now may be landing the very data this one would find
    missing) and before the orchestrator: a flow run of the deployment then has no tasks, and
    `millpond run` starts no Prefect at all.

    The ledger's bookkeeping settles nothing over a warehouse that is missing or unreadable
    (millpond.runtime.damage), nor publish over a `current` snapshot that does not open
    (the publish kind's own check)."""
    if not check_warehouse(ctx).can_settle or ctx.full_refresh:
        return None
    before = ctx.resource_keys()
    settles = _all_up_to_date(ctx)
    if settles is None:
        ctx.drop_resources(keep=before)
        return None
    for node_id, settle in settles.items():
        run_node(ctx, node_id, work=settle)
    logger.info(f"nothing new: {len(settles)} nodes up to date, settled without running them")
    return finish_run(ctx)


def _all_up_to_date(ctx: RunContext) -> dict[str, Settle] | None:
    """Each node's settle, in graph order (a dbt node's parents are checked before it), or
    None at the first node that would do something."""
    settles: dict[str, Settle] = {}
    for node in ctx.graph.nodes:
        check = NODE_KINDS.get(node.kind).up_to_date
        try:
            settle = check(ctx, node) if check else None
        except Exception as exc:  # the run itself reports what is wrong
            logger.debug(f"{node.id}: cannot tell whether it is up to date ({exc})")
            settle = None
        if settle is None:
            logger.debug(f"{node.id} has work to do: the run starts")
            return None
        settles[node.id] = settle
    return settles
