"""`serve.app:app`, the millpond API (`just serve`)."""

from __future__ import annotations

from fastapi import FastAPI

from serve.routes import health, runs


def create_app() -> FastAPI:
    app = FastAPI(title="millpond", description="Run history and metrics of a millpond stack.")
    app.include_router(health.router)
    app.include_router(runs.router)
    return app


app = create_app()
