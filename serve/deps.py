"""Request dependencies: the ledger, API-key auth and read-only access to the published marts."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated

import psycopg
from fastapi import Depends, Header, HTTPException
from psycopg_pool import ConnectionPool, PoolTimeout

from metadata.db import CONNECT_TIMEOUT_S, migrate, normalize_url, resolve_url
from millpond.core.config import ConfigError, MillpondConfig
from millpond.core.masking import mask
from serve.auth import key_matches, presented_key
from serve.marts.catalog import Catalog, load_catalog
from serve.marts.readers import MartsReader, open_reader
from serve.settings import ServeSettings, get_settings, get_stack_config


def stack_config() -> MillpondConfig:
    try:
        return get_stack_config()
    except ConfigError as exc:
        raise HTTPException(503, f"millpond config unusable: {mask(str(exc))}") from None


@lru_cache
def ledger_url() -> str:
    """Resolved once per process: for `embedded` this starts (or joins) the local server, and
    the schema is brought up to date so the API also answers before the first run."""
    config = get_stack_config()
    url = resolve_url(config.metadata.url, config.state, keep_running=True)
    migrate(url)
    return url


@lru_cache
def ledger_pool() -> ConnectionPool:
    """Connections kept open between requests: opening one per request capped /runs at about
    200 req/s on one worker. Connections are checked before reuse, so a ledger that went away
    and came back is picked up again."""
    return ConnectionPool(
        normalize_url(ledger_url()),
        min_size=1,
        max_size=8,
        kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
        check=ConnectionPool.check_connection,
        timeout=CONNECT_TIMEOUT_S,
        open=True,
    )


def ledger_connection() -> Iterator[psycopg.Connection]:
    """A ledger connection for one request; 503 with the reason when the ledger is unusable,
    so clients (and load balancers) see "come back later", never a 500."""
    try:
        pool = ledger_pool()
    except ConfigError as exc:
        raise HTTPException(503, f"millpond config unusable: {mask(str(exc))}") from None
    except Exception as exc:  # e.g. alembic cannot reach the database at first use
        raise HTTPException(503, f"metadata database unavailable: {type(exc).__name__}") from None
    try:
        with pool.connection() as conn:
            yield conn
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
        raise HTTPException(503, f"metadata database unavailable: {type(exc).__name__}") from None


Ledger = Annotated[psycopg.Connection, Depends(ledger_connection)]
Settings = Annotated[ServeSettings, Depends(get_settings)]


def require_api_key(
    settings: Settings,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """Guards marts, the trigger, metrics and custom routers when keys are configured."""
    keys = settings.keys
    if not keys:
        return
    presented = presented_key(x_api_key, authorization)
    if presented is None:
        raise HTTPException(401, "API key required (X-API-Key header or Bearer token)")
    if not key_matches(presented, keys):
        raise HTTPException(403, "API key not accepted")


ApiKey = Depends(require_api_key)


def marts_catalog(config: Annotated[MillpondConfig, Depends(stack_config)]) -> Catalog:
    """The marts readers may query, from the dbt manifest and the published relations."""
    try:
        return load_catalog(config)
    except FileNotFoundError as exc:
        raise HTTPException(503, str(exc)) from None


def marts_reader(config: Annotated[MillpondConfig, Depends(stack_config)]) -> Iterator[MartsReader]:
    """A read-only connection to the published marts for one request (one snapshot)."""
    try:
        reader = open_reader(config)
    except FileNotFoundError as exc:
        raise HTTPException(503, str(exc)) from None
    except Exception as exc:
        raise HTTPException(503, f"published marts unavailable: {mask(str(exc))}") from None
    try:
        yield reader
    finally:
        reader.close()


Marts = Annotated[MartsReader, Depends(marts_reader)]
MartsCatalog = Annotated[Catalog, Depends(marts_catalog)]

# For a team's own routers (serve.routers): `def f(marts: PublishedMarts): marts.rows(sql, [])`.
PublishedMarts = Marts
