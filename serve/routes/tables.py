"""Row counts per relation over the recent runs: did last night load fewer rows?"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from millpond.metadata import queries
from millpond.serve.deps import LedgerConn
from millpond.serve.schemas import TableHistory

router = APIRouter(tags=["runs"])


def group_history(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ledger rows (relation, run, rows) -> one series per relation, oldest point first."""
    series: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        series.setdefault(row["relation"], []).append(row)
    return [
        {"relation": rel, "latest_rows": points[-1]["rows"], "points": points}
        for rel, points in series.items()
    ]


@router.get("/tables", response_model=list[TableHistory])
def tables(
    conn: LedgerConn,
    relation: str | None = None,
    runs: Annotated[int, Query(ge=1, le=1000, description="how many recent runs")] = 50,
) -> list[dict[str, Any]]:
    """Rows of each built relation over the most recent runs."""
    return group_history(queries.row_count_history(conn, relation, runs))
