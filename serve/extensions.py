"""A team's own routers (`serve.routers` in millpond.yml) mounted beside millpond's.

They get the same API-key guard as the marts, and can ask for `serve.deps.PublishedMarts`: a
read-only reader of the published marts (one snapshot per request)."""

from __future__ import annotations

import importlib
import sys

from fastapi import APIRouter, FastAPI

from millpond.core.config import ConfigError, MillpondConfig
from millpond.serve.deps import ApiKey


def load_router(ref: str) -> APIRouter:
    """`package.module:name` -> the APIRouter it names, or ConfigError saying what is wrong."""
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"serve.routers: cannot import {module_name!r}: {exc}") from None
    router = getattr(module, attr, None)
    if not isinstance(router, APIRouter):
        raise ConfigError(f"serve.routers: {ref!r} is not a fastapi.APIRouter")
    return router


def mount_routers(app: FastAPI, config: MillpondConfig) -> list[str]:
    """Include every configured router (the project folder is importable); returns their refs."""
    root = str(config.root)
    if root not in sys.path:
        sys.path.insert(0, root)
    for ref in config.serve.routers:
        app.include_router(load_router(ref), dependencies=[ApiKey])
    return list(config.serve.routers)
