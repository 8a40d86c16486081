"""Run history: runs, their nodes, tests and row counts, straight from the ledger."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query

from metadata import queries
from serve.deps import Ledger

router = APIRouter(prefix="/runs", tags=["runs"])


@router.get("")
def list_runs(conn: Ledger, limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
    """Newest runs first."""
    return queries.list_runs(conn, limit)


@router.get("/{run_id}")
def get_run(conn: Ledger, run_id: str) -> dict[str, Any]:
    """One run with its tests and row counts."""
    run = queries.get_run(conn, run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id!r} in the ledger")
    run["tests"] = queries.test_results(conn, run_id)
    run["row_counts"] = queries.row_counts(conn, run_id)
    return run


@router.get("/{run_id}/nodes")
def run_nodes(conn: Ledger, run_id: str) -> list[dict[str, Any]]:
    """Every attempt of every node of the run."""
    if queries.get_run(conn, run_id) is None:
        raise HTTPException(404, f"no run {run_id!r} in the ledger")
    return queries.run_nodes(conn, run_id)
