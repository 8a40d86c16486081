"""Read-only access to the published marts, one reader per request.

DuckDB target: the snapshot `current` points at, opened read-only; the reader resolves the link
once, so everything a request reads comes from one snapshot even while runs publish new ones.
PostgreSQL target: the `<published_prefix><schema>` schemas through a read-only session (a
publish swaps them in one transaction, so one statement never sees a mix).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import duckdb
import psycopg
import pyarrow as pa
from psycopg import sql

from millpond.core.config import MillpondConfig
from millpond.targets.duckdb.publish import current_snapshot

BATCH_ROWS = 65_536


class MartsReader(Protocol):
    """What the marts API and custom routers need from a published-marts connection."""

    location: str
    placeholder: str  # how a bound parameter is written in this engine's SQL

    @property
    def snapshot(self) -> str | None:
        """Which publish is being read (DuckDB: the snapshot's run id); read-only."""

    def relation(self, schema: str, name: str) -> str: ...
    def relations(self) -> dict[tuple[str, str], list[tuple[str, str]]]: ...
    def scalar(self, query: str, params: list[Any]) -> Any: ...
    def rows(self, query: str, params: list[Any]) -> list[dict[str, Any]]: ...
    def batches(self, query: str, params: list[Any]) -> pa.RecordBatchReader: ...
    def close(self) -> None: ...


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


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
    _bases: dict[str, duckdb.DuckDBPyConnection] = {}
    _lock = threading.Lock()

    def __init__(self, published_dir: Path) -> None:
        path = current_snapshot(published_dir)
        if path is None:
            raise FileNotFoundError(f"{published_dir}: nothing published yet; run `just run` first")
        self.snapshot = path.stem
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
        return self.con.execute(query, params).fetch_record_batch(BATCH_ROWS)

    def close(self) -> None:
        self.con.close()


class PostgresReader:
    """A read-only session on the warehouse database, reading the published schemas."""

    placeholder = "%s"

    def __init__(
        self, url: str, prefix: str, role: str | None = None, password: str | None = None
    ) -> None:
        self.prefix = prefix
        self.snapshot = None
        self.location = "postgres"
        # As the read-only role BI tools use (when millpond manages one), so the API can read
        # exactly what they can: the published schemas, nothing else, never writing.
        login: dict[str, Any] = {"user": role, "password": password} if role else {}
        self.con = psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=3,
            options="-c default_transaction_read_only=on",
            **{k: v for k, v in login.items() if v is not None},
        )

    def relation(self, schema: str, name: str) -> str:
        return f"{quote(self.prefix + schema)}.{quote(name)}"

    def relations(self) -> dict[tuple[str, str], list[tuple[str, str]]]:
        rows = self.con.execute(
            "select table_schema, table_name, column_name, data_type "
            "from information_schema.columns where table_schema like %s "
            "order by table_schema, table_name, ordinal_position",
            [self.prefix.replace("_", r"\_") + "%"],
        ).fetchall()
        found: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for schema, table, column, data_type in rows:
            found.setdefault((schema.removeprefix(self.prefix), table), []).append(
                (column, data_type)
            )
        return found

    def scalar(self, query: str, params: list[Any]) -> Any:
        row = self.con.execute(sql.SQL(query), params).fetchone()
        return row[0] if row else None

    def rows(self, query: str, params: list[Any]) -> list[dict[str, Any]]:
        with self.con.cursor() as cur:
            cur.execute(sql.SQL(query), params)
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def batches(self, query: str, params: list[Any]) -> pa.RecordBatchReader:
        cur = self.con.cursor()
        cur.execute(sql.SQL(query), params)
        names = [d.name for d in cur.description or []]
        first = cur.fetchmany(BATCH_ROWS)
        schema = pa.RecordBatch.from_pylist(
            [dict(zip(names, r, strict=True)) for r in first]
        ).schema
        if not first:
            schema = pa.schema([(n, pa.string()) for n in names])

        def chunks() -> Iterator[pa.RecordBatch]:
            rows = first
            while rows:
                yield pa.RecordBatch.from_pylist(
                    [dict(zip(names, r, strict=True)) for r in rows], schema=schema
                )
                rows = cur.fetchmany(BATCH_ROWS)
            cur.close()

        return pa.RecordBatchReader.from_batches(schema, chunks())

    def close(self) -> None:
        self.con.close()


def open_reader(config: MillpondConfig) -> MartsReader:
    """The reader for the configured target's published marts."""
    if config.target_name == "postgres":
        target = config.target_config
        return PostgresReader(
            target.url, target.published_prefix, target.reader_role, target.reader_password
        )
    return DuckDBReader(config.published_dir)


def snapshot_key(config: MillpondConfig) -> str | None:
    """What identifies the published marts now without opening them (DuckDB: the snapshot
    file `current` points at; PostgreSQL: nothing cheaper than the catalog's own query)."""
    if config.target_name == "postgres":
        return None
    current = current_snapshot(config.published_dir)
    return str(current) if current else None
