"""Health: is the service usable, i.e. can it read the ledger and the published marts?

Answers 503 with the reason when either is unusable, so a load balancer or a monitor sees what
clients would see (the ledger down used to give 500s on /runs while /health said ok)."""

from __future__ import annotations

import psycopg
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from millpond.core.logs import logger
from millpond.core.masking import mask
from millpond.serve import deps
from millpond.serve.errors import SEE_LOG
from millpond.serve.marts.readers import open_reader
from millpond.serve.schemas import Health

router = APIRouter(tags=["health"])


def _ledger_state() -> str:
    try:
        with deps.ledger_pool().connection() as conn:
            conn.execute("SELECT 1 FROM millpond.runs LIMIT 1")
        return "ok"
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        return f"unavailable: {type(exc).__name__}"
    except Exception as exc:  # e.g. the config is unusable: its message names files
        logger.warning(f"health: ledger unusable: {type(exc).__name__}: {mask(str(exc))}")
        return f"unavailable: {type(exc).__name__} ({SEE_LOG})"


def _marts_state() -> tuple[str, str | None]:
    try:
        reader = open_reader(deps.get_stack_config())
    except FileNotFoundError:
        return "unavailable: nothing published yet", None
    except Exception as exc:
        return _unusable(exc), None
    try:
        reader.scalar("SELECT 1", [])
        return "ok", reader.snapshot
    except Exception as exc:
        return _unusable(exc), None
    finally:
        reader.close()


def _unusable(exc: Exception) -> str:
    """/health is open to anyone: the exception's text (paths) goes to the log only."""
    logger.warning(f"health: published marts unusable: {type(exc).__name__}: {mask(str(exc))}")
    return f"unavailable: {type(exc).__name__} ({SEE_LOG})"


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health() -> JSONResponse:
    """Checks the ledger and the published marts; 503 names what is unusable."""
    ledger = _ledger_state()
    marts, snapshot = _marts_state()
    ok = ledger == "ok" and marts == "ok"
    body = Health(
        status="ok" if ok else "unavailable", ledger=ledger, marts=marts, snapshot=snapshot
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
