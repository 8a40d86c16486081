"""The refusals made before any route runs, as plain ASGI (BaseHTTPMiddleware costs a task and
a body stream per request, which halved the requests a worker can answer):

- without API keys nothing is guarded, so nothing but this machine may ask: whatever address
  uvicorn was told to bind, requests from elsewhere get 403;
- with API keys, every path needs a key (serve.auth) but `/health`, the login form and what
  `serve.public` lists: routes, static files, the OpenAPI schema and paths that do not exist
  alike (an unknown path is 401, not 404, so the routes are not there to be mapped). A browser
  asking for a page gets the login form instead of a JSON 401;
- a NUL byte in the path or a query value can never match a name or a value millpond stores
  (PostgreSQL text cannot hold one): 400 instead of a database error later.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from fastapi.responses import JSONResponse, Response
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from millpond.core.config import ConfigError
from millpond.serve.auth import check
from millpond.serve.routes.login import login_page
from millpond.serve.settings import get_settings, get_stack_config

LOCAL_CLIENTS = {"127.0.0.1", "::1", "localhost", "testclient"}


def public_paths() -> list[str]:
    """`serve.public` of the config; nothing extra when the config is unusable."""
    try:
        return list(get_stack_config().serve.public)
    except ConfigError:
        return []


class RequestGuard:
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
    def refusal(scope: Scope) -> Response | None:
        keys = get_settings().keys
        client = scope.get("client")
        host = client[0] if client else "testclient"
        if not keys and host not in LOCAL_CLIENTS:
            return JSONResponse(
                {"detail": "no API key is configured: this service answers 127.0.0.1 only"}, 403
            )
        if keys:
            request = HTTPConnection(scope)
            method = scope.get("method", "GET")
            refused = check(
                method, scope["path"], request.headers, request.cookies, keys, public_paths()
            )
            if refused is not None:
                if method == "GET" and "text/html" in request.headers.get("accept", ""):
                    target = scope["path"] + (f"?{request.url.query}" if request.url.query else "")
                    return login_page("", target, refused.status)
                return JSONResponse(
                    {"detail": refused.detail},
                    refused.status,
                    headers={"WWW-Authenticate": "Bearer"} if refused.status == 401 else None,
                )
        query = unquote_to_bytes(scope.get("query_string", b"").replace(b"+", b" "))
        if "\x00" in scope.get("path", "") or b"\x00" in query:
            return JSONResponse({"detail": "NUL bytes are not allowed in paths or parameters"}, 400)
        return None
