"""The PostgreSQL target: raw tables bulk-loaded by COPY, dbt through dbt-postgres, marts
published by a schema swap for BI tools that speak only PostgreSQL.

`warehouse: {target: postgres, url: postgresql://user@host:5432/db}` (or
`millpond run --target postgres`, or MILLPOND_WAREHOUSE__TARGET=postgres). The same dbt project
builds on DuckDB and here; SQL that differs between engines lives in `adapter.dispatch` macros.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from psycopg import sql
from pydantic import field_validator

from millpond.core.config import MillpondConfig, TargetConfigBase
from millpond.core.locks import file_lock
from millpond.core.masking import mask, mask_url
from millpond.core.registry import LoadedTable, Probe, PublishedMarts, TargetKind
from millpond.targets.postgres import load, publish, reader

PASSWORD_ENV = "MILLPOND_WAREHOUSE_PASSWORD"


class PostgresConfig(TargetConfigBase):
    """`warehouse: {target: postgres, url: ...}`; readers get `<published_prefix><schema>`
    through the read-only login role `reader_role` (unset: no role is managed)."""

    url: str
    published_prefix: str = "published_"
    reader_role: str | None = "millpond_reader"
    reader_password: str | None = None
    threads: int = 1

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("published_prefix")
    @classmethod
    def _distinct_prefix(cls, value: str) -> str:
        # An empty prefix would make the published schemas dbt's own, which the swap drops.
        if not value or len(value) > 30:
            raise ValueError("must be 1 to 30 characters (readers read <prefix><schema>)")
        return value


# URL options dbt-postgres understands too (SSL on managed servers, timeouts, role).
DBT_OPTIONS = ("sslmode", "sslcert", "sslkey", "sslrootcert", "connect_timeout", "role")


def connection_parts(url: str) -> dict[str, Any]:
    """host, port, user, password and dbname of a URL (`?host=/socket/dir` included), and
    the options dbt needs as well."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    found: dict[str, Any] = {
        "host": query.get("host") or parts.hostname or "127.0.0.1",
        "port": int(query.get("port") or parts.port or 5432),
        "user": unquote(query.get("user") or parts.username or "postgres"),
        "password": unquote(query.get("password") or parts.password or ""),
        "dbname": unquote(query.get("dbname") or parts.path.lstrip("/") or "postgres"),
    }
    options: dict[str, str | int] = {k: query[k] for k in DBT_OPTIONS if k in query}
    if "connect_timeout" in options:
        options["connect_timeout"] = int(options["connect_timeout"])
    return found | options


class PostgresTarget:
    """One PostgreSQL database: raw schema, dbt's schemas and the published ones."""

    name = "postgres"

    def __init__(self, config: PostgresConfig, stack: MillpondConfig) -> None:
        self.config = config
        self.url = config.url
        self.raw_schema = config.raw_schema
        self.locks_dir = stack.locks_dir
        self._role_ready = False

    def probe(self, timeout: float) -> Probe:
        """The database answers `select 1` within `timeout`; nothing is created."""
        try:
            with psycopg.connect(self.url, connect_timeout=max(1, int(timeout))) as conn:
                conn.execute("select 1")
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return Probe(
                problems=(
                    f"warehouse.postgres.url: cannot connect to {mask_url(self.url)} "
                    f"({mask(first)}); "
                    "check the host, port, credentials and database",
                )
            )
        return Probe(detail=f"{mask_url(self.url)}: answers")

    def writer_lock(self) -> AbstractContextManager[None]:
        return file_lock(self.locks_dir / "warehouse-postgres.lock", "warehouse")

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection under the writer lock (a Python node's `warehouse()`); committed
        when the block ends without an error."""
        with self.writer_lock(), psycopg.connect(self.url) as conn:
            yield conn

    def load_table(self, lake: Any, source: str, table: str) -> LoadedTable:
        return load.load_table(self.url, lake, self.raw_schema, source, table)

    def loaded_partitions(self, source: str, table: str) -> set[str]:
        return load.loaded_partitions(self.url, self.raw_schema, source, table)

    def drop_partition(self, source: str, table: str, partition_id: str) -> bool:
        return load.drop_partition(self.url, self.raw_schema, source, table, partition_id)

    def row_count(self, relation: str) -> int:
        schema, _, name = relation.rpartition(".")
        with psycopg.connect(self.url) as conn:
            row = conn.execute(
                sql.SQL("select count(*) from {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(name)
                )
            ).fetchone()
        return int(row[0]) if row else 0

    def publish(self, run_id: str, schemas: list[str], keep: int) -> PublishedMarts:
        role = self._reader_role()
        tables = publish.publish(self.url, schemas, self.config.published_prefix, role)
        published = sorted({t.rsplit(".", 1)[0] for t in tables})
        return PublishedMarts(f"{mask_url(self.url)} schemas {', '.join(published)}", tables)

    def _reader_role(self) -> str | None:
        role = self.config.reader_role
        if role and not self._role_ready:
            dbname = connection_parts(self.url)["dbname"]
            ready = publish.ensure_reader_role(self.url, role, self.config.reader_password, dbname)
            self._role_ready = ready
            return role if ready else None
        return role

    def dbt_output(self) -> dict[str, Any]:
        parts = connection_parts(self.url)
        options = {k: parts[k] for k in DBT_OPTIONS if k in parts}
        return {
            "type": "postgres",
            "host": parts["host"],
            "port": parts["port"],
            "user": parts["user"],
            "password": "{{ env_var('" + PASSWORD_ENV + "', '') }}",
            "dbname": parts["dbname"],
            "schema": "public",
            "threads": self.config.threads,
            **options,
        }

    def dbt_env(self) -> dict[str, str]:
        return {PASSWORD_ENV: connection_parts(self.url)["password"]}

    def release(self) -> None:
        """dbt-postgres keeps no file open between invocations."""


POSTGRES = TargetKind(config_model=PostgresConfig, create=PostgresTarget, reader=reader.open_reader)
