"""Run history (filtered, paginated) from the ledger, and triggering a new run."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse

from millpond.core.logs import logger
from millpond.core.masking import mask
from millpond.metadata import queries
from millpond.metadata.records import RunStatus
from millpond.serve import prefect_trigger, trigger
from millpond.serve.deps import ApiKey, LedgerConn, Settings, stack_config
from millpond.serve.queued import QueuedRun
from millpond.serve.schemas import (
    NodeRun,
    RunDetail,
    RunningConflict,
    RunPage,
    RunRequest,
    Triggered,
)

router = APIRouter(prefix="/runs", tags=["runs"])


@router.get("", response_model=RunPage)
def list_runs(
    conn: LedgerConn,
    status: RunStatus | None = None,
    since: Annotated[dt.datetime | None, Query(description="runs started at or after")] = None,
    until: Annotated[dt.datetime | None, Query(description="runs started before")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    """Newest runs first, with the total that match the filters (for paging)."""
    items, total = queries.find_runs(
        conn, status=status, since=since, until=until, limit=limit, offset=offset
    )
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/{run_id}", response_model=RunDetail, responses={404: {"description": "no such run"}})
def get_run(conn: LedgerConn, run_id: str) -> dict[str, Any]:
    """One run with its tests and row counts."""
    run = queries.get_run(conn, run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id[:100]!r} in the ledger")
    run["tests"] = queries.test_results(conn, run_id)
    run["row_counts"] = queries.row_counts(conn, run_id)
    return run


@router.get(
    "/{run_id}/nodes",
    response_model=list[NodeRun],
    responses={404: {"description": "no such run"}},
)
def run_nodes(conn: LedgerConn, run_id: str) -> list[dict[str, Any]]:
    """Every attempt of every node of the run."""
    if queries.get_run(conn, run_id) is None:
        raise HTTPException(404, f"no run {run_id[:100]!r} in the ledger")
    return queries.run_nodes(conn, run_id)


@router.post(
    "",
    status_code=202,
    response_model=Triggered,
    dependencies=[ApiKey],
    responses={409: {"model": RunningConflict, "description": "a run is already running"}},
)
def trigger_run(conn: LedgerConn, settings: Settings, request: RunRequest | None = None) -> Any:
    """Start a run; returns its run id at once (poll `GET /runs/{run_id}`).

    Through the Prefect deployment when `millpond ui` serves it (a flow run of the deployment,
    with the body as its parameters), else `millpond run --trigger api` in the background.
    409 with the running run's id while another run holds the stack's run lock."""
    config = stack_config()
    request = request or RunRequest()
    running = queries.running_runs(conn)
    running_id = running[0]["run_id"] if running else None
    queued = QueuedRun(conn, request.target or config.target_name)  # serve/queued.py
    try:
        deployment = prefect_trigger.served_deployment(config)
        if deployment is not None:
            parameters = request.model_dump(exclude_defaults=True)
            run_id, flow_run_id = prefect_trigger.start_run(
                config, deployment, running_id, parameters, queued
            )
            return {"run_id": run_id, "status": "scheduled", "flow_run_id": flow_run_id}
        child = trigger.start_run(
            config, settings.config.resolve(), running_id, request.args(), queued
        )
    except trigger.AlreadyRunning as exc:
        return JSONResponse({"detail": str(exc), "run_id": exc.run_id}, status_code=409)
    except Exception as exc:  # TriggerFailed, or Prefect answering what it should not
        # The row is closed with the reason (masked, in the ledger); the answer names the
        # run only, as every error of the API: the reason may hold a server path.
        reason = str(exc) if isinstance(exc, trigger.TriggerFailed) else repr(exc)
        queued.fail(f"could not start the run: {reason}")
        logger.error(f"POST /runs: could not start run {queued.run_id}: {mask(reason)}")
        raise HTTPException(
            503, f"could not start run {queued.run_id} (details in the service log)"
        ) from None
    queued.watch(child.process, config.logs_dir / "api-trigger.log")
    return {"run_id": child.run_id, "status": "started", "pid": child.process.pid}
