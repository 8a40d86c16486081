"""Errors a client sees: what went wrong in words, never the server's paths or internals.

The details (which file, which exception) go to the service log, where the operator reads
them; the body says what is unusable and that the log has more. A client of a guarded API
learns nothing about the server's layout from an error."""

from __future__ import annotations

import traceback
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from millpond.core.logs import logger
from millpond.core.masking import mask

SEE_LOG = "details in the service log"
MAX_ECHO = 100  # characters of a refused value a 422 repeats back


def unavailable(what: str, exc: BaseException, status: int = 503) -> HTTPException:
    """An HTTPException saying `what` is unusable; the exception itself is logged."""
    logger.warning(f"{what}: {type(exc).__name__}: {mask(str(exc))}")
    return HTTPException(status, f"{what} ({SEE_LOG})")


def _short(value: Any) -> Any:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + f"... ({len(text)} characters)"


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 body, with each refused value cut short (a 5 MB selector is not echoed
    back) and without pydantic's documentation links."""
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        item = {k: v for k, v in error.items() if k in ("type", "loc", "msg")}
        if "input" in error and error["type"] not in ("missing",):
            item["input"] = _short(error["input"])
        errors.append(item)
    return JSONResponse({"detail": errors}, 422)


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    """A 500 that says only that it happened; the traceback goes to the log."""
    # The traceback as text, without the variables' values loguru would add to it.
    trace = "".join(traceback.format_exception(exc))
    logger.error(f"{request.method} {request.url.path} failed:\n{mask(trace)}")
    return JSONResponse({"detail": f"internal error ({SEE_LOG})"}, 500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, server_error)
