"""Data test results over the recent runs, failures easy to filter; the monitors' anomalies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from millpond.metadata import queries
from millpond.serve.deps import LedgerConn
from millpond.serve.schemas import Anomaly, TestResult

router = APIRouter(tags=["runs"])


@router.get("/tests", response_model=list[TestResult])
def tests(
    conn: LedgerConn,
    status: Literal["pass", "fail", "warn", "error", "skipped"] | None = None,
    test: str | None = None,
    runs: Annotated[int, Query(ge=1, le=1000, description="how many recent runs")] = 20,
) -> list[dict[str, Any]]:
    """Test outcomes of the most recent runs, newest first."""
    return queries.test_history(conn, status=status, test=test, limit_runs=runs)


@router.get("/anomalies", response_model=list[Anomaly])
def anomalies(
    conn: LedgerConn,
    run_id: str | None = None,
    monitor: Literal["volume", "freshness"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Volume anomalies and freshness alerts, newest first (of one run with `run_id`; those
    of `millpond check-freshness` have none). See docs/monitoring.md."""
    return queries.anomalies(conn, run_id=run_id, monitor=monitor, limit=limit)
