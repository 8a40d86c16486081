"""Run history (filtered, paginated) from the ledger, and triggering a new run."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse, PlainTextResponse

from millpond.core.logs import logger
from millpond.core.masking import mask
from millpond.core.run_log import line, node_of, records
from millpond.metadata import queries
from millpond.metadata.records import RunStatus
from millpond.metadata.retries import RetryRefused, check_retryable
from millpond.serve import prefect_trigger, trigger
from millpond.serve.deps import ApiKey, LedgerConn, Settings, stack_config
from millpond.serve.queued import QueuedRun
from millpond.serve.schemas import (
    NodeRun,
    Problem,
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
    """One run with its tests, row counts and the monitors' anomalies."""
    run = queries.get_run(conn, run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id[:100]!r} in the ledger")
    run["tests"] = queries.test_results(conn, run_id)
    run["row_counts"] = queries.row_counts(conn, run_id)
    run["anomalies"] = queries.anomalies(conn, run_id=run_id)
    run["retried_by"] = queries.retries_of(conn, run_id)
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


@router.get(
    "/{run_id}/nodes/{node_id}/log",
    response_class=PlainTextResponse,
    responses={404: {"description": "no such run, or no log lines of that node"}},
)
def node_log(conn: LedgerConn, run_id: str, node_id: str) -> PlainTextResponse:
    """The node's lines of the run's log, as `millpond logs RUN NODE` prints them (the
    dashboard's failed nodes link here). Secrets were masked when the log was written."""
    if queries.get_run(conn, run_id) is None:
        raise HTTPException(404, f"no run {run_id[:100]!r} in the ledger")
    path = stack_config().logs_dir / f"{run_id}.jsonl"
    readable = "/" not in run_id and path.is_file()  # a run id of the ledger names no folder
    found = [line(r) for r in records(path) if node_of(r) == node_id] if readable else []
    if not found:
        raise HTTPException(
            404, f"no log lines of node {node_id[:100]!r} in run {run_id[:100]!r} on this machine"
        )
    return PlainTextResponse("\n".join(found) + "\n")


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
    queued = QueuedRun(conn, request.target or config.target_name, config)  # serve/queued.py
    parameters = request.model_dump(exclude_defaults=True)
    return _start(conn, settings, queued, parameters, request.args())


@router.post(
    "/{run_id}/retry",
    status_code=202,
    response_model=Triggered,
    dependencies=[ApiKey],
    responses={
        404: {"model": Problem, "description": "no such run"},
        409: {
            "model": RunningConflict,
            "description": "the run is still running or succeeded (nothing to retry), or "
            "another run is running",
        },
    },
)
def retry_run(conn: LedgerConn, settings: Settings, run_id: str) -> Any:
    """Start a retry of a failed (or abandoned) run; returns the new run's id at once.

    The new run reruns the run's failed, skipped and never-started nodes with everything
    downstream of them, keeps every other node as the run left it (`unchanged`), and records
    `retry_of`; it starts like `POST /runs` (the Prefect deployment, else `millpond run`),
    with the run's own select, exclude, full_refresh and target. 404 for a run the ledger
    does not know; 409 for one still running or that succeeded."""
    run = queries.get_run(conn, run_id)
    try:
        check_retryable(run_id, run)
    except RetryRefused as exc:
        if exc.unknown:
            raise HTTPException(404, str(exc)) from None
        return JSONResponse({"detail": str(exc), "run_id": run_id}, status_code=409)
    config = stack_config()
    target = (run or {}).get("target")
    queued = QueuedRun(conn, target or config.target_name, config, retry_of=run_id)
    parameters: dict[str, Any] = {"retry_of": run_id}
    args = [f"--retry-of={run_id}"]
    if target:
        parameters["target"] = target
        args.append(f"--target={target}")
    return _start(conn, settings, queued, parameters, args)


def _start(
    conn: Any, settings: Any, queued: QueuedRun, parameters: dict[str, Any], args: list[str]
) -> Any:
    """Start the run `queued` records: a flow run of the served deployment with these
    parameters, else `millpond run` with these options; 409 while another run runs."""
    config = stack_config()
    running = queries.running_runs(conn)
    running_id = running[0]["run_id"] if running else None
    try:
        deployment = prefect_trigger.served_deployment(config)
        if deployment is not None:
            run_id, flow_run_id = prefect_trigger.start_run(
                config, deployment, running_id, parameters, queued
            )
            return {"run_id": run_id, "status": "scheduled", "flow_run_id": flow_run_id}
        child = trigger.start_run(config, settings.config.resolve(), running_id, args, queued)
    except trigger.AlreadyRunning as exc:
        return JSONResponse({"detail": str(exc), "run_id": exc.run_id}, status_code=409)
    except Exception as exc:  # TriggerFailed, or Prefect answering what it should not
        # The row is closed with the reason (masked, in the ledger); the answer names the
        # run only, as every error of the API: the reason may hold a server path.
        reason = str(exc) if isinstance(exc, trigger.TriggerFailed) else repr(exc)
        queued.fail(f"could not start the run: {reason}", wait=False)
        logger.error(f"POST /runs: could not start run {queued.run_id}: {mask(reason)}")
        raise HTTPException(
            503, f"could not start run {queued.run_id} (details in the service log)"
        ) from None
    queued.watch(child.process, config.logs_dir / "api-trigger.log")
    return {"run_id": child.run_id, "status": "started", "pid": child.process.pid}
