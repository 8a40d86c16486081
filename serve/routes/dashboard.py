"""`/`: the dashboard page (server-rendered; plots drawn by vendored uPlot)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from millpond.core.config import MillpondConfig
from millpond.serve.dashboard import render
from millpond.serve.deps import LedgerConn, Settings, stack_config

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def dashboard(
    conn: LedgerConn, settings: Settings, config: MillpondConfig = Depends(stack_config)
) -> HTMLResponse:
    return HTMLResponse(render(conn, config.project, logout=bool(settings.keys)))
