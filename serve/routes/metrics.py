"""`/metrics`: Prometheus exposition of runs, node durations, rows, tests and freshness."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from millpond.core.config import MillpondConfig
from millpond.metadata.buffer import buffer_files
from millpond.serve import deps
from millpond.serve.deps import ApiKey
from millpond.serve.metrics import registry_for

router = APIRouter(tags=["metrics"], dependencies=[ApiKey])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
def metrics(config: MillpondConfig = Depends(deps.stack_config)) -> Response:
    """Prometheus text format; answers (with `millpond_ledger_up 0`) even with the ledger down."""
    registry = registry_for(deps.ledger_url, buffer_files(config.state))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
