"""The PostgreSQL target's marts reader: the `<published_prefix><schema>` schemas through a
read-only session.

A publish swaps the schemas in one transaction, so one statement never sees a mix. The session
logs in as the read-only role BI tools use when millpond manages one, so the API reads exactly
what they can: the published schemas, nothing else, never writing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql

from millpond.core.config import MillpondConfig
from millpond.core.registry import MARTS_BATCH_ROWS
from millpond.core.sql import quote


class PostgresReader:
    """A read-only session on the warehouse database, reading the published schemas."""

    placeholder = "%s"
    bad_input: tuple[type[Exception], ...] = (psycopg.DataError,)

    def __init__(
        self, url: str, prefix: str, role: str | None = None, password: str | None = None
    ) -> None:
        self.prefix = prefix
        self.snapshot: str | None = None
        self.location = "postgres"
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
        first = cur.fetchmany(MARTS_BATCH_ROWS)
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
                rows = cur.fetchmany(MARTS_BATCH_ROWS)
            cur.close()

        return pa.RecordBatchReader.from_batches(schema, chunks())

    def close(self) -> None:
        self.con.close()


def open_reader(config: MillpondConfig) -> PostgresReader:
    """The reader of the configured stack's published schemas (`TargetKind.reader`)."""
    target = config.target_config
    return PostgresReader(
        target.url, target.published_prefix, target.reader_role, target.reader_password
    )
