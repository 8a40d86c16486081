"""`serve.app:app`, the millpond API and dashboard (`just serve`, `millpond serve`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from millpond.core.config import ConfigError
from millpond.core.logs import logger
from millpond.serve import errors
from millpond.serve.deps import ApiKey
from millpond.serve.extensions import mount_routers
from millpond.serve.guard import RequestGuard
from millpond.serve.routes import (
    dashboard,
    docs,
    health,
    jobs,
    login,
    marts,
    metrics,
    runs,
    tables,
    tests,
)
from millpond.serve.settings import get_settings, get_stack_config

STATIC = Path(__file__).parent / "static"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if get_settings().keys:
        logger.info(
            "API keys configured: every path but /health (and serve.public) needs X-API-Key "
            "or a browser login at /login"
        )
    else:
        logger.warning(
            "no MILLPOND_API_KEYS set: the API answers clients on 127.0.0.1 only "
            "(set MILLPOND_API_KEYS to serve other machines)"
        )
    yield


def create_app() -> FastAPI:
    app = FastAPI(
        title="millpond",
        description="Run history, metrics, the published marts as an API, and a dashboard.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.add_middleware(RequestGuard)
    errors.install(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    docs.mount_docs(app)
    for module in (health, login):
        app.include_router(module.router)
    # serve.guard already refuses these without a key; the dependency says so in the schema.
    for module in (runs, jobs, tables, tests, metrics, dashboard):
        app.include_router(module.router, dependencies=[ApiKey])
    try:
        config = get_stack_config()
    except ConfigError as exc:  # the service still starts; requests answer 503 (log: why)
        logger.error(f"millpond config unusable: {exc}")
        config = None
    if config is not None:
        marts.add_mart_routes(app.router, config)
    app.include_router(marts.router)
    if config is not None:
        mount_routers(app, config)
    return app


app = create_app()
