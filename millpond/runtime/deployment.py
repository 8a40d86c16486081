"""The flow Prefect's runner runs for the deployment `millpond ui` serves: a whole millpond run.

A flow run of the deployment (on the schedule, or started from the UI or the API) is one full
millpond run through the same run start as `millpond run` (millpond.runtime.start: the run
lock, a ledger row opened and closed whatever happens, nothing new settled without tasks), the
graph's nodes as the flow run's tasks (no second flow run), the run log. The run id
is made as the flow run starts (or adopted: `POST /runs` creates the flow run already named
with one) and becomes the flow run's name. The trigger recorded is `schedule` for runs
Prefect's scheduler made, `api` for runs of millpond's API, `ui` for any other (the Prefect UI
or Prefect's own API).

The run is in the ledger from the flow run's first step: `queued` (with this process's lease)
as soon as the config is read, before the run lock and the graph; a failure before the graph
runs closes it `failed` with the reason and tells the webhooks. A config that cannot be read
at all is recorded from the parts of it that can (millpond.runtime.unstartable).

It lives in the composition root because it wires config, ledger and graph together; flows/
serves it (`flows.deployment.serve_forever`).
"""

from __future__ import annotations

import os
from typing import Any

from prefect import flow
from prefect.states import Completed, Failed

from millpond.core.config import MillpondConfig
from millpond.core.logs import close_run_log, logger, node_context, open_run_log, setup_console
from millpond.core.masking import mask
from millpond.core.runid import is_run_id, new_run_id
from millpond.flows.prefect_api import API_TAG
from millpond.runtime.context import RunContext
from millpond.runtime.flow_runs import CurrentFlowRun
from millpond.runtime.lifecycle import fail_start, queue_run
from millpond.runtime.start import RunEnd, StartFailed, run_whole
from millpond.runtime.unstartable import ConfigUnreadable, load_or_record


def trigger_of(flow_run: Any) -> str:
    """What started this flow run, as the ledger records it."""
    if getattr(flow_run, "auto_scheduled", False):
        return "schedule"
    return "api" if API_TAG in (getattr(flow_run, "tags", None) or []) else "ui"


def _env(target: str | None) -> dict[str, str]:
    """The serving process's environment, with the run's target override."""
    env = dict(os.environ)
    if target:
        env["MILLPOND_WAREHOUSE__TARGET"] = target
    return env


def flow_run_name() -> str:
    """The run id, as the flow run's name: Prefect calls this as the flow run starts (before it
    is Running), so the run never shows under a random name. A name that is a run id already
    (`POST /runs` made it) is kept."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    name = context.flow_run.name if context and context.flow_run else None
    return str(name) if is_run_id(name) else new_run_id()


def flow_run_state(ctx: RunContext, end: RunEnd) -> Any:
    """The flow run's final state, from how the run ended."""
    if end.status != "success":
        return Failed(message=f"run {ctx.run_id}: {end.status}")
    if end.settled:
        return Completed(
            message=f"run {ctx.run_id}: nothing new, {len(ctx.outcomes)} nodes up to date"
        )
    return Completed(message=f"run {ctx.run_id}: {len(ctx.outcomes)} nodes succeeded")


def run_deployment(
    select: list[str] | None,
    exclude: list[str] | None,
    full_refresh: bool,
    target: str | None,
) -> Any:
    """What a flow run of the deployment does (see `millpond_deployment`)."""
    from prefect.context import FlowRunContext

    setup_console()
    context = FlowRunContext.get()
    flow_run = context.flow_run if context else None
    if flow_run is None:  # Prefect's runner calls the flow; nothing else should
        raise RuntimeError("a flow run of the deployment runs only inside its flow run")
    run_id = flow_run.name if is_run_id(flow_run.name) else new_run_id()
    trigger = trigger_of(flow_run)
    try:
        config = load_or_record(run_id, trigger, str(flow_run.id), _env(target))
    except ConfigUnreadable as exc:  # recorded failed: millpond.runtime.unstartable
        return Failed(message=f"run {run_id}: {exc}")
    ctx = RunContext.for_run(config, run_id, select, exclude, full_refresh)
    ctx.flow_run_id = str(flow_run.id)
    queue_run(ctx, trigger)  # before the run lock: a run waiting behind another shows queued
    try:
        open_run_log(config.logs_dir, run_id)
        with node_context(run_id):
            logger.info(f"run {run_id} ({trigger}) of {config.project}")
            end = run_whole(ctx, trigger, CurrentFlowRun(), queued=True)
    except StartFailed as exc:  # closed failed already, with the reason
        return Failed(message=f"run {run_id}: {exc}")
    except Exception as exc:
        if ctx.closed is not None:
            raise  # closed already, with what happened
        message = f"cannot start the run: {mask(str(exc)) or type(exc).__name__}"
        logger.error(message)
        fail_start(ctx, message)
        return Failed(message=f"run {run_id}: {message}")
    finally:
        close_run_log(run_id)
    return flow_run_state(ctx, end)


@flow(name="millpond", flow_run_name=flow_run_name, persist_result=False, log_prints=False)
def millpond_deployment(
    select: list[str] | None = None,
    exclude: list[str] | None = None,
    full_refresh: bool = False,
    target: str | None = None,
) -> Any:
    """A whole millpond run: extract, load, dbt, publish, recorded in the ledger.

    Args:
        select: dbt-style selectors of the nodes to run (with what they need); empty: all.
        exclude: dbt-style selectors of nodes to leave out.
        full_refresh: rebuild incremental models from scratch (dbt --full-refresh).
        target: warehouse target for this run (overrides warehouse.target).
    """
    # The runner pickles this function by value into the run's subprocess: it must reference
    # no module globals (loguru's logger, for one, holds locks that cannot be pickled).
    from millpond.runtime.deployment import run_deployment

    return run_deployment(select, exclude, full_refresh, target)


def serve_deployment(config: MillpondConfig) -> None:
    """Serve the deployment until SIGTERM (what `millpond ui` runs in the background)."""
    from millpond.flows.deployment import serve_forever

    serve_forever(millpond_deployment, config)
