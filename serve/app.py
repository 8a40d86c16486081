"""`serve.app:app`, the millpond API and dashboard (`just serve`, `millpond serve`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from millpond.core.config import ConfigError
from millpond.core.logs import logger
from serve.extensions import mount_routers
from serve.routes import dashboard, docs, health, jobs, marts, metrics, runs, tables, tests
from serve.settings import get_settings, get_stack_config

STATIC = Path(__file__).parent / "static"
LOCAL_CLIENTS = {"127.0.0.1", "::1", "localhost", "testclient"}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if get_settings().keys:
        logger.info("API keys configured: marts, trigger and metrics need X-API-Key")
    else:
        logger.warning(
            "no MILLPOND_API_KEYS set: the API answers clients on 127.0.0.1 only "
            "(set MILLPOND_API_KEYS to serve other machines)"
        )
    yield


async def local_only_without_keys(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Without API keys nothing is guarded, so nothing but this machine may ask: whatever
    address uvicorn was told to bind, requests from elsewhere get 403."""
    client = request.client.host if request.client else "testclient"
    if not get_settings().keys and client not in LOCAL_CLIENTS:
        return JSONResponse(
            {"detail": "no API key is configured: this service answers 127.0.0.1 only"}, 403
        )
    return await call_next(request)


async def refuse_nul_bytes(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """A NUL byte in a path or query value can never match a name or a value millpond
    stores (PostgreSQL text cannot hold one): 400 here instead of a database error later."""
    if "\x00" in request.url.path or any(
        "\x00" in v for _, v in request.query_params.multi_items()
    ):
        return JSONResponse({"detail": "NUL bytes are not allowed in paths or parameters"}, 400)
    return await call_next(request)


def create_app() -> FastAPI:
    app = FastAPI(
        title="millpond",
        description="Run history, metrics, the published marts as an API, and a dashboard.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.middleware("http")(local_only_without_keys)
    app.middleware("http")(refuse_nul_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    docs.mount_docs(app)
    for module in (health, runs, jobs, tables, tests, metrics, dashboard):
        app.include_router(module.router)
    try:
        config = get_stack_config()
    except ConfigError as exc:  # the service still starts; requests answer 503 with the reason
        logger.error(f"millpond config unusable: {exc}")
        config = None
    if config is not None:
        marts.add_mart_routes(app.router, config)
    app.include_router(marts.router)
    if config is not None:
        mount_routers(app, config)
    return app


app = create_app()
