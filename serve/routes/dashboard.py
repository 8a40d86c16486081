"""`/`: the dashboard page (server-rendered tables; SVG charts drawn by static/dashboard.js)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from millpond.core.config import MillpondConfig
from millpond.serve.dashboard import render
from millpond.serve.deps import LedgerConn, Settings, stack_config

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def dashboard(
    conn: LedgerConn,
    settings: Settings,
    config: MillpondConfig = Depends(stack_config),
    run: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """`?run=<run_id>` shows that run's slowest nodes and timeline (default: the last run)."""
    return HTMLResponse(render(conn, config.project, logout=bool(settings.keys), run_id=run))
