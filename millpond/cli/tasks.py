"""`millpond run-start` and `millpond run-finish`: the first and last task of the Airflow DAG.

They open and close the run in the ledger around the `millpond run-node` tasks (see
millpond.runtime.task_run); `run-finish` exits 1 when the run failed, so the DAG run fails too.
`run-start` also starts the stack's warm node worker on its machine and `run-finish` stops it
(millpond.cli.warm; `airflow.warm_worker: false` turns it off).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

RunIdOption = Annotated[str, typer.Option("--run-id", help="the orchestrator's run id")]
# BashOperator's default skip_on_exit_code: the task is marked skipped, and so are the node
# tasks after it (trigger rule all_success), while run_finish (all_done) still runs.
SKIP_EXIT_CODE = 99
OrchestratorOption = Annotated[str, typer.Option(help="recorded in the ledger")]


def run_start(
    run_id: RunIdOption,
    trigger: Annotated[
        str,
        typer.Option(
            help="the orchestrator's run type, recorded as the trigger (Airflow's "
            "dag_run.run_type: manual, scheduled -> schedule, backfill, asset_triggered)"
        ),
    ] = "",
    orchestrator: OrchestratorOption = "airflow",
    config_path: Annotated[
        str | None, typer.Option("--config", "-c", help="millpond.yml to use")
    ] = None,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="the run rebuilds every model: never settled")
    ] = False,
) -> None:
    """Open a run in the ledger (the first task of the Airflow DAG).

    Example: millpond run-start --run-id manual__2026-01-01 --trigger manual

    Closes runs that died (their lease is gone) as abandoned first, and starts the warm node
    worker the run's `run-node` tasks on this machine use (unless `airflow.warm_worker` is
    false). When every node is up to date (nothing new landed, no model changed), it settles
    the run instead, as `millpond run` does (each node recorded unchanged, nothing
    republished), and exits 99, which Airflow takes as skipped: the node tasks are skipped."""
    from millpond.cli.common import load, out
    from millpond.cli.warm.control import start_worker
    from millpond.core.logs import close_run_log, logger, node_context, open_run_log
    from millpond.runtime.context import RunContext
    from millpond.runtime.nothing_new import settle_if_nothing_new
    from millpond.runtime.task_run import open_task_run

    config = load(_path(config_path))
    open_run_log(config.logs_dir, run_id)
    ctx = RunContext(config, run_id, orchestrator=orchestrator, full_refresh=full_refresh)
    try:
        with node_context(run_id):
            open_task_run(ctx, trigger)
            settled = settle_if_nothing_new(ctx)
            if settled is None:
                logger.info(start_worker(config))
    finally:
        ctx.close()
        close_run_log(run_id)
    if settled is not None:
        out.print(f"run {run_id}: {settled}, nothing new (every node up to date, not run)")
        raise typer.Exit(SKIP_EXIT_CODE)
    out.print(f"run {run_id}: opened")


def run_finish(
    run_id: RunIdOption,
    orchestrator: OrchestratorOption = "airflow",
    config_path: Annotated[
        str | None, typer.Option("--config", "-c", help="millpond.yml to use")
    ] = None,
) -> None:
    """Close a run with its real status from its nodes' records (the last task of the
    Airflow DAG, trigger rule all_done); exits 1 if the run failed. Stops the warm node
    worker `run-start` started.

    Example: millpond run-finish --run-id manual__2026-01-01"""
    from millpond.cli.common import console, load, out
    from millpond.cli.warm.control import stop_worker
    from millpond.core.logs import close_run_log, node_context, open_run_log
    from millpond.metadata.reads import run_status
    from millpond.metadata.records.runs import RUN_FINAL_STATUSES
    from millpond.runtime.context import RunContext
    from millpond.runtime.lifecycle import fail_start
    from millpond.runtime.task_run import close_task_run

    config = load(_path(config_path))
    stop_worker(config)  # every node task has ended: all_done
    open_run_log(config.logs_dir, run_id)
    ctx = RunContext(config, run_id, orchestrator=orchestrator)
    # Closed already: run_start settled it (nothing new) or could not start it.
    settled = run_status(ctx.ledger, run_id)
    if settled in RUN_FINAL_STATUSES:
        ctx.close()
        close_run_log(run_id)
        out.print(f"run {run_id}: {settled} (settled by run_start: nothing new)")
        raise typer.Exit(0 if settled == "success" else 1)
    try:
        with node_context(run_id):
            try:
                ctx.graph  # noqa: B018 - the nodes the run should have run
            except Exception as exc:  # the run is closed even without a graph
                fail_start(ctx, f"cannot build the graph: {exc}")
                console.print(f"[red]run {run_id}: failed[/]: {exc}", highlight=False)
                raise typer.Exit(1) from None
            status = close_task_run(ctx)
    finally:
        close_run_log(run_id)
    failed = [o.node_id for o in ctx.outcomes.values() if o.status in ("failed", "skipped")]
    out.print(
        f"run {run_id}: {status}"
        + (f" ({len(failed)} nodes failed or did not run)" if failed else "")
    )
    raise typer.Exit(0 if status == "success" else 1)


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
