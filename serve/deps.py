"""Request dependencies: the ledger, API-key auth and read-only access to the published marts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Annotated, TypeVar

import psycopg
from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader
from psycopg_pool import ConnectionPool, PoolTimeout

from millpond.core.config import ConfigError, MillpondConfig
from millpond.core.registry import MartsReader
from millpond.metadata.db import CONNECT_TIMEOUT_S, migrate, normalize_url, resolve_url
from millpond.serve.auth import HEADER, check
from millpond.serve.errors import unavailable
from millpond.serve.guard import public_paths
from millpond.serve.marts.catalog import Catalog, load_catalog
from millpond.serve.marts.readers import open_reader
from millpond.serve.settings import ServeSettings, get_settings, get_stack_config

CONFIG_UNUSABLE = "millpond config unusable"
NOTHING_PUBLISHED = "nothing published yet: run `millpond run` first"
MARTS_UNAVAILABLE = "published marts unavailable"


def stack_config() -> MillpondConfig:
    try:
        return get_stack_config()
    except ConfigError as exc:
        raise unavailable(CONFIG_UNUSABLE, exc) from None


# The dependencies of every marts request are `async def`: they only read cached settings, and
# a sync dependency costs a trip through the thread pool per request (a quarter of what a
# cached marts page costs in all).
async def request_config() -> MillpondConfig:
    """stack_config, as a dependency resolved without the thread pool."""
    return stack_config()


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
        raise unavailable(CONFIG_UNUSABLE, exc) from None
    except Exception as exc:  # e.g. alembic cannot reach the database at first use
        raise unavailable(f"metadata database unavailable: {type(exc).__name__}", exc) from None
    try:
        with pool.connection() as conn:
            yield conn
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
        raise unavailable(f"metadata database unavailable: {type(exc).__name__}", exc) from None


# A request's ledger connection (not metadata.ledger.Ledger, the buffered writer of a run).
LedgerConn = Annotated[psycopg.Connection, Depends(ledger_connection)]
RequestConfig = Annotated[MillpondConfig, Depends(request_config)]
# Documents the key in the OpenAPI schema (Swagger's "Authorize" sends it); the check is ours.
API_KEY_HEADER = APIKeyHeader(name=HEADER, auto_error=False)


async def serve_settings() -> ServeSettings:
    return get_settings()


Settings = Annotated[ServeSettings, Depends(serve_settings)]


async def require_api_key(
    request: Request,
    settings: Settings,
    header_key: Annotated[str | None, Security(API_KEY_HEADER)] = None,
) -> None:
    """The key check of serve.guard, again, for a route that asks for it (`ApiKey`): the guard
    already refused what this refuses; a team's router may depend on it all the same.
    `header_key` is only there to declare the header in the OpenAPI schema."""
    refused = check(
        request.method,
        request.url.path,
        request.headers,
        request.cookies,
        settings.keys,
        public_paths(),
    )
    if refused is not None:
        raise HTTPException(refused.status, refused.detail)


ApiKey = Depends(require_api_key)
T = TypeVar("T")


def marts_catalog(config: Annotated[MillpondConfig, Depends(stack_config)]) -> Catalog:
    """The marts readers may query, from the dbt manifest and the published relations."""
    return catalog_or_503(config)


def catalog_or_503(config: MillpondConfig) -> Catalog:
    """The catalog, or a 503 that names no file (the log has it)."""
    return _or_503(load_catalog, config)


def _or_503(open_marts: Callable[[MillpondConfig], T], config: MillpondConfig) -> T:
    """What `open_marts` gives for the published marts, or a 503 that names no file: nothing
    published yet, or marts that cannot be read (the log has the path and the error)."""
    try:
        return open_marts(config)
    except FileNotFoundError as exc:
        raise unavailable(NOTHING_PUBLISHED, exc) from None
    except Exception as exc:
        raise unavailable(MARTS_UNAVAILABLE, exc) from None


def marts_reader(config: Annotated[MillpondConfig, Depends(stack_config)]) -> Iterator[MartsReader]:
    """A read-only connection to the published marts for one request (one snapshot)."""
    reader = reader_or_503(config)
    try:
        yield reader
    finally:
        reader.close()


def reader_or_503(config: MillpondConfig) -> MartsReader:
    """A reader of the published marts, or a 503 that names no file (the log has it)."""
    return _or_503(open_reader, config)


Marts = Annotated[MartsReader, Depends(marts_reader)]
MartsCatalog = Annotated[Catalog, Depends(marts_catalog)]

# For a team's own routers (serve.routers): `def f(marts: PublishedMarts): marts.rows(sql, [])`.
PublishedMarts = Marts
