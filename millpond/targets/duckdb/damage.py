"""A warehouse file that is damaged, told apart from one that is busy or a query that is wrong.

DuckDB's own message for a damaged file ("Corrupt database file: computed checksum ...")
names no file and no way out; every warehouse connection goes through `open_checked`, which
names the file and the repair.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

REPAIR = "`millpond doctor --repair` rebuilds it from the lake"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class WarehouseDamaged(Exception):
    """The warehouse file cannot be opened or read: retrying cannot help, repairing does."""

    retryable = False

    def __init__(self, path: Path, exc: BaseException) -> None:
        super().__init__(
            f"the warehouse {path} cannot be read ({first_line(exc)}); {REPAIR} "
            "(the marts readers see stay as published)"
        )
        self.path = path


# What DuckDB raises for a damaged or foreign file (a checksum that does not match, a file
# that is not a DuckDB database, a truncated one). A lock another process holds is an
# IOException too: told apart by its text.
_DAMAGE = (duckdb.IOException, duckdb.SerializationException, duckdb.InternalException)


def is_damage(exc: BaseException) -> bool:
    """Whether a DuckDB error says the file itself is damaged (not busy, not a bad query)."""
    if not isinstance(exc, duckdb.Error):
        return False
    text = str(exc).lower()
    if "conflicting lock" in text or "could not set lock" in text:
        return False
    return isinstance(exc, _DAMAGE) or "corrupt" in text or "checksum" in text


def open_checked(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, with a damaged file reported as WarehouseDamaged naming it."""
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as exc:
        if is_damage(exc):
            raise WarehouseDamaged(path, exc) from exc
        raise
