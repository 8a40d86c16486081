"""What each registered kind needs for the contract suite: a small case per kind, keyed by its
registered name. A kind registered without a case fails the suite (tests/contract/kinds.py),
so a new source kind or target is done when it has a case here and passes.

A source case is the source's section of millpond.yml, the table it offers and how many rows
that table holds; a target case is the target's section of `warehouse:`. A factory gets a
`Kit`: the test's folder, the shared fixtures (the test PostgreSQL, MariaDB) and a place to
start servers that stop after the test.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from conftest import postgres_execute, require_server
from rest_server import CUSTOMERS, serve_api

T = TypeVar("T")

ORDERS_CSV = "id,amount\n1,10.5\n2,3.25\n3,7.75\n"


@dataclass
class Kit:
    """What a case factory may use."""

    tmp: Path
    request: pytest.FixtureRequest
    exits: ExitStack

    def fixture(self, name: str) -> Any:
        """A shared fixture (e.g. `machine_pg`: a fresh database on the test PostgreSQL)."""
        return self.request.getfixturevalue(name)

    def enter(self, context: AbstractContextManager[T]) -> T:
        """Start something (a server) that stops when the test ends."""
        return self.exits.enter_context(context)


@dataclass(frozen=True)
class SourceCase:
    section: dict[str, Any]  # sources.<name> of millpond.yml
    table: str
    rows: int


@dataclass(frozen=True)
class TargetCase:
    section: dict[str, Any]  # warehouse.<target> of millpond.yml


# --- sources ---------------------------------------------------------------------------------


def files_case(kit: Kit) -> SourceCase:
    inbox = kit.tmp / "inbox"
    inbox.mkdir(exist_ok=True)
    (inbox / "orders_1.csv").write_text(ORDERS_CSV)
    return SourceCase({"kind": "files", "path": str(inbox), "tables": ["orders"]}, "orders", 3)


def _orders_in_postgres(kit: Kit) -> str:
    url: str = kit.fixture("machine_pg")
    postgres_execute(
        url,
        "create table orders (id integer primary key, amount numeric(10, 2))",
        "insert into orders values (1, 10.5), (2, 3.25), (3, 7.75)",
    )
    return url


def sql_case(kit: Kit) -> SourceCase:
    url = _orders_in_postgres(kit)
    return SourceCase({"kind": "sql", "url": url, "tables": ["orders"]}, "orders", 3)


def odbc_case(kit: Kit) -> SourceCase:
    ini = Path("/etc/odbcinst.ini")
    installed = ini.is_file() and "[PostgreSQL Unicode]" in ini.read_text()
    require_server(installed, "psqlODBC driver not installed")
    url = _orders_in_postgres(kit)
    parts = urlsplit(url)
    if not parts.hostname:
        pytest.skip("psqlODBC is tested over TCP (the machine's PostgreSQL), not a socket")
    connection = (
        f"Driver={{PostgreSQL Unicode}};Server={parts.hostname};Port={parts.port};"
        f"Database={parts.path.lstrip('/')};"
    )
    section = {
        "kind": "odbc",
        "connection_string": connection,
        "user": parts.username or "postgres",
        "tables": ["orders"],
    }
    return SourceCase(section, "orders", 3)


def rest_case(kit: Kit) -> SourceCase:
    base, _ = kit.enter(serve_api())
    tables = {"customers": {"path": "/link", "paginate": {"style": "link_header"}}}
    section = {"kind": "rest", "base_url": base, "tables": tables}
    return SourceCase(section, "customers", len(CUSTOMERS))


def inline_case(kit: Kit) -> SourceCase:
    records = [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}]
    return SourceCase({"kind": "inline", "tables": {"notes": {"records": records}}}, "notes", 2)


SOURCE_CASES: dict[str, Callable[[Kit], SourceCase]] = {
    "files": files_case,
    "sql": sql_case,
    "odbc": odbc_case,
    "rest": rest_case,
    "inline": inline_case,  # the toy kind (toy_source.py)
}


# --- targets ---------------------------------------------------------------------------------


def duckdb_case(kit: Kit) -> TargetCase:
    return TargetCase({})  # the default file, under the stack's own folder


def postgres_case(kit: Kit) -> TargetCase:
    return TargetCase({"url": kit.fixture("machine_pg")})


def folder_case(kit: Kit) -> TargetCase:
    return TargetCase({"path": str(kit.tmp / "folder")})


TARGET_CASES: dict[str, Callable[[Kit], TargetCase]] = {
    "duckdb": duckdb_case,
    "postgres": postgres_case,
    "folder": folder_case,  # the toy target (toy_target.py)
}
