"""`serve.app:app`, the millpond API and dashboard (`just serve`, `millpond serve`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import unquote_to_bytes

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

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


class RequestGuard:
    """Two refusals before any route runs, as plain ASGI (BaseHTTPMiddleware costs a task and
    a body stream per request, which halved the requests a worker can answer):

    - without API keys nothing is guarded, so nothing but this machine may ask: whatever
      address uvicorn was told to bind, requests from elsewhere get 403;
    - a NUL byte in the path or a query value can never match a name or a value millpond
      stores (PostgreSQL text cannot hold one): 400 instead of a database error later.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self.refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def refusal(scope: Scope) -> JSONResponse | None:
        client = scope.get("client")
        host = client[0] if client else "testclient"
        if not get_settings().keys and host not in LOCAL_CLIENTS:
            return JSONResponse(
                {"detail": "no API key is configured: this service answers 127.0.0.1 only"}, 403
            )
        query = unquote_to_bytes(scope.get("query_string", b"").replace(b"+", b" "))
        if "\x00" in scope.get("path", "") or b"\x00" in query:
            return JSONResponse({"detail": "NUL bytes are not allowed in paths or parameters"}, 400)
        return None


def create_app() -> FastAPI:
    app = FastAPI(
        title="millpond",
        description="Run history, metrics, the published marts as an API, and a dashboard.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.add_middleware(RequestGuard)
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
