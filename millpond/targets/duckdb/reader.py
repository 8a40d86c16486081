"""The DuckDB target's marts reader: the snapshot `current` points at, opened read-only.

The reader resolves the link once, so everything one reader reads comes from one snapshot even
while runs publish new ones. Its connection is hardened: it can touch no other file and change
no setting, so a team's router given this connection stays inside the snapshot.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from millpond.core.config import MillpondConfig
from millpond.core.registry import MARTS_BATCH_ROWS
from millpond.core.sql import quote
from millpond.targets.duckdb.publish import current_snapshot

# What a reader's connection may no longer do once the snapshot is open: touch any other file
# (ATTACH the warehouse read-write, COPY ... TO, read_csv('/etc/passwd'), INSTALL/LOAD an
# extension) or change a setting (so not SET external access back on either). Custom routers
# get this connection, and anything they run with it stays inside the snapshot.
HARDENING = ("SET enable_external_access = false", "SET lock_configuration = true")


def harden(con: duckdb.DuckDBPyConnection) -> None:
    """Lock a connection to the database it opened (every cursor of it shares the lock)."""
    for statement in HARDENING:
        con.execute(statement)


class DuckDBReader:
    """A cursor on the current snapshot; the snapshot's database is opened once per process."""

    placeholder = "?"
    bad_input: tuple[type[Exception], ...] = (
        duckdb.ConversionException,
        duckdb.InvalidInputException,
    )
    _bases: dict[str, duckdb.DuckDBPyConnection] = {}
    _lock = threading.Lock()

    def __init__(self, published_dir: Path) -> None:
        path = current_snapshot(published_dir)
        if path is None:
            raise FileNotFoundError(f"{published_dir}: nothing published yet; run `just run` first")
        self.snapshot: str | None = path.stem
        self.location = str(path)
        self.con = self._base(path).cursor()

    @classmethod
    def _base(cls, path: Path) -> duckdb.DuckDBPyConnection:
        key = str(path)
        with cls._lock:
            base = cls._bases.get(key)
            if base is None:
                # Snapshots deleted by `publish.keep` are dropped; open cursors keep theirs alive.
                for old in [k for k in cls._bases if not Path(k).exists()]:
                    cls._bases.pop(old).close()
                base = duckdb.connect(key, read_only=True)
                harden(base)
                cls._bases[key] = base
            return base

    def relation(self, schema: str, name: str) -> str:
        return f"{quote(schema)}.{quote(name)}"

    def relations(self) -> dict[tuple[str, str], list[tuple[str, str]]]:
        rows = self.con.execute(
            "select table_schema, table_name, column_name, data_type "
            "from information_schema.columns where table_catalog = current_database() "
            "order by table_schema, table_name, ordinal_position"
        ).fetchall()
        found: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for schema, table, column, data_type in rows:
            found.setdefault((schema, table), []).append((column, data_type))
        return found

    def scalar(self, query: str, params: list[Any]) -> Any:
        row = self.con.execute(query, params).fetchone()
        return row[0] if row else None

    def rows(self, query: str, params: list[Any]) -> list[dict[str, Any]]:
        cur = self.con.execute(query, params)
        names = [d[0] for d in cur.description or []]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def batches(self, query: str, params: list[Any]) -> pa.RecordBatchReader:
        return self.con.execute(query, params).fetch_record_batch(MARTS_BATCH_ROWS)

    def close(self) -> None:
        self.con.close()


def open_reader(config: MillpondConfig) -> DuckDBReader:
    """The reader of the configured stack's current snapshot (`TargetKind.reader`)."""
    return DuckDBReader(config.published_dir)


def published_key(config: MillpondConfig) -> str | None:
    """The snapshot file `current` points at, without opening it; None before the first
    publish (`TargetKind.published_key`)."""
    current = current_snapshot(config.published_dir)
    return str(current) if current else None
