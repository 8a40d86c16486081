"""The millpond metadata ledger: a PostgreSQL schema ``millpond`` recording runs, nodes, tests,
row counts, landed partitions and source cursors.

Modules: ``embedded`` (embedded PostgreSQL for laptops), ``db`` (URLs, connections,
migrations), ``records`` (one typed, frozen record per kind of write, carrying its SQL),
``ledger`` (the run's writer: records written or buffered through one path), ``buffer`` (the
local buffer file records wait in while the database is down), ``reads`` (what a run reads
back through its writer), ``queries`` (the API's and the CLI's reads as plain dicts).
Imports only the kernel, so any process (Airflow task, API, CLI) can use it alone.
"""

from millpond.metadata.db import connect, migrate, resolve_url
from millpond.metadata.ledger import Ledger, LedgerUnavailableError

__all__ = ["Ledger", "LedgerUnavailableError", "connect", "migrate", "resolve_url"]
