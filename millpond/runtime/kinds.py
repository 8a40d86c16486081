"""The registration: every built-in source kind, target and node kind, one line each.

Adding a kind is one module plus one line here (see docs/architecture.md). Node kinds build the
graph in this order, so a kind sees the nodes of the kinds above it.
"""

from __future__ import annotations

from ingest.sources.files import FILES
from ingest.sources.odbc import ODBC
from ingest.sources.rest import REST
from ingest.sources.sql import SQL
from millpond.core.registry import NODE_KINDS, SOURCES, TARGETS
from millpond.nodes.dbt import DBT
from millpond.nodes.extract import EXTRACT
from millpond.nodes.load import LOAD
from millpond.nodes.publish import PUBLISH_KIND
from millpond.targets.duckdb import DUCKDB
from millpond.targets.postgres import POSTGRES


def register_builtin_kinds() -> None:
    """Idempotent: registering the same kind object again is a no-op."""
    SOURCES.register("files", FILES)
    SOURCES.register("sql", SQL)
    SOURCES.register("odbc", ODBC)
    SOURCES.register("rest", REST)

    TARGETS.register("duckdb", DUCKDB)
    TARGETS.register("postgres", POSTGRES)

    NODE_KINDS.register("extract", EXTRACT)
    NODE_KINDS.register("load", LOAD)
    NODE_KINDS.register("dbt", DBT)
    NODE_KINDS.register("publish", PUBLISH_KIND)
