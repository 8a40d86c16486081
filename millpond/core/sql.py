"""SQL spelling both engines share: an identifier quoted the same way in DuckDB and PostgreSQL.

Every name that reaches SQL from a config, a manifest or a request is quoted through here, so
no module keeps a copy that could drift from the others.
"""

from __future__ import annotations


def quote(identifier: str) -> str:
    """A name as a quoted SQL identifier (a `"` inside it doubled)."""
    return '"' + identifier.replace('"', '""') + '"'
