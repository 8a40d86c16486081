"""Request dependencies: a ledger connection per request, opened from the stack's config."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated

import psycopg
from fastapi import Depends, HTTPException

from metadata.db import connect, resolve_url
from serve.settings import get_stack_config


@lru_cache
def ledger_url() -> str:
    """Resolved once per process: for `embedded` this starts (or joins) the local server."""
    config = get_stack_config()
    return resolve_url(config.metadata.url, config.state)


def ledger_connection() -> Iterator[psycopg.Connection]:
    try:
        conn = connect(ledger_url())
    except psycopg.OperationalError as exc:
        raise HTTPException(503, f"metadata database unavailable: {type(exc).__name__}") from None
    try:
        yield conn
    finally:
        conn.close()


Ledger = Annotated[psycopg.Connection, Depends(ledger_connection)]
