"""Latest status of every node (the ledger's `job_status` view)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from millpond.metadata import queries
from millpond.serve.deps import LedgerConn
from millpond.serve.schemas import NodeRun

router = APIRouter(tags=["runs"])


@router.get("/jobs", response_model=list[NodeRun])
def jobs(conn: LedgerConn) -> list[dict[str, Any]]:
    """Each node's most recent attempt (its latest run, highest attempt)."""
    return queries.job_status(conn)
