"""The registration: every built-in source kind, target and node kind, one line each.

Adding a kind is one module plus one line here (see docs/architecture.md). Node kinds build the
graph in the order of their declared `stage` (millpond.core.registry.Stage), whatever the order
of the lines here or the name of the entry point that registers them.
"""

from __future__ import annotations

from millpond.core.registry import NODE_KINDS, SOURCES, TARGETS
from millpond.ingest.sources.files import FILES
from millpond.ingest.sources.odbc import ODBC
from millpond.ingest.sources.rest import REST
from millpond.ingest.sources.sql import SQL
from millpond.nodes.dbt import DBT, DBT_KIND
from millpond.nodes.extract import EXTRACT, EXTRACT_KIND
from millpond.nodes.fingerprints import PUBLISH_KIND
from millpond.nodes.load import LOAD, LOAD_KIND
from millpond.nodes.publish import PUBLISH
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

    NODE_KINDS.register(EXTRACT_KIND, EXTRACT)
    NODE_KINDS.register(LOAD_KIND, LOAD)
    NODE_KINDS.register(DBT_KIND, DBT)
    NODE_KINDS.register(PUBLISH_KIND, PUBLISH)
