"""An example route over the published marts: the API keys and the read-only snapshot come
from millpond (`millpond serve`, then GET /shop/daily-sales/2026-01-05)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from millpond.serve.deps import PublishedMarts

router = APIRouter(prefix="/shop", tags=["shop"])


@router.get("/daily-sales/{day}")
def daily_sales(day: str, marts: PublishedMarts) -> dict[str, Any]:
    """One day's orders and revenue from the published mart."""
    sales = marts.relation("marts", "fct_daily_sales")
    rows = marts.rows(
        f"select orders, revenue from {sales} where ordered_on = cast({marts.placeholder} as date)",
        [day],
    )
    if not rows:
        raise HTTPException(404, f"no sales on {day}")
    return {"day": day, **rows[0]}
