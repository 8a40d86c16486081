"""Request dependencies: a ledger connection per request, opened from the stack's config."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated

import psycopg
from fastapi import Depends, HTTPException

from metadata.db import connect, migrate, resolve_url
from millpond.core.config import ConfigError
from serve.settings import get_stack_config


@lru_cache
def ledger_url() -> str:
    """Resolved once per process: for `embedded` this starts (or joins) the local server, and
    the schema is brought up to date so the API also answers before the first run."""
    config = get_stack_config()
    url = resolve_url(config.metadata.url, config.state, keep_running=True)
    migrate(url)
    return url


def ledger_connection() -> Iterator[psycopg.Connection]:
    try:
        conn = connect(ledger_url())
    except ConfigError as exc:
        raise HTTPException(503, f"millpond config unusable: {exc}") from None
    except psycopg.OperationalError as exc:
        raise HTTPException(503, f"metadata database unavailable: {type(exc).__name__}") from None
    try:
        yield conn
    finally:
        conn.close()


Ledger = Annotated[psycopg.Connection, Depends(ledger_connection)]
