"""Data test results over the recent runs, failures easy to filter."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from millpond.metadata import queries
from millpond.serve.deps import LedgerConn
from millpond.serve.schemas import TestResult

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
