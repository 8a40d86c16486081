"""The millpond metadata ledger: a PostgreSQL schema ``millpond`` recording runs, nodes, tests,
row counts, landed partitions and source cursors.

Modules: ``embedded`` (embedded PostgreSQL for laptops), ``db`` (URLs, connections,
migrations), ``ledger`` (buffered idempotent writes), ``queries`` (reads as plain dicts).
Kept free of millpond imports so any process (Airflow task, API, CLI) can use it alone.
"""

from metadata.db import connect, migrate, resolve_url
from metadata.ledger import Ledger, LedgerUnavailableError

__all__ = ["Ledger", "LedgerUnavailableError", "connect", "migrate", "resolve_url"]
