"""PostgreSQL test helpers: a ledger database that is down, at its own URL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
from conftest import database_url


@contextlib.contextmanager
def refusing(url: str, drop_open: bool = False) -> Iterator[None]:
    """The database refuses new connections while the block runs (and, with `drop_open`,
    drops the open ones), as a server that is down does; records buffered meanwhile are for
    this very ledger (a closed port would be another ledger's URL, whose buffer is never
    replayed here)."""
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(database_url(url, "postgres"), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        if drop_open:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
        try:
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
