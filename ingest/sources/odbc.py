"""The `odbc` source kind: any ODBC data source (an ERP's DSN, a driver connection string).

Read through unixODBC with arrow-odbc, which fetches straight into Arrow record batches (no row
objects in Python), so memory stays bounded by `batch_size`. Tables, queries, full snapshots,
incremental cursors and primary keys work as for `kind: sql` (ingest.sources.tables). The
incremental filter is a bound parameter (`where <column> > ?`), sent as text and converted by
the driver.

Driver notes (Debian's drivers, tested here): psqlODBC returns `timestamptz` as a timestamp
without zone in the server's time zone; MariaDB Connector/ODBC marks columns NOT NULL as they
are declared.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from millpond.core.config import MillpondConfig, SourceConfigBase
from millpond.core.masking import inline_secrets, mask, register_secrets
from millpond.core.registry import Probe, SourceItem, SourceKind, TableState
from millpond.ingest.sources.tables import (
    TableReadError,
    TableSpec,
    minus_lookback,
    starting_point,
    table_item,
    tracking_cursor,
)


class OdbcSourceConfig(SourceConfigBase):
    """`connection_string: "Driver={PostgreSQL Unicode};Server=...;Database=..."` or
    `dsn: NAME` (from odbc.ini); credentials apart, from `${ENV}`."""

    kind: Literal["odbc"]
    connection_string: str | None = None
    dsn: str | None = None
    user: str | None = None
    password: str | None = None
    tables: dict[str, TableSpec]
    # Rows per Arrow batch; arrow-odbc allocates buffers for the widest possible value of each
    # column, so text columns without a declared length make batches big: memory is bounded
    # by both this and `max_batch_mb`.
    batch_size: int = Field(10_000, ge=100)
    max_batch_mb: int = Field(64, ge=1)
    login_timeout_seconds: int = Field(15, ge=1)

    @model_validator(mode="after")
    def _one_way_to_connect(self) -> OdbcSourceConfig:
        if bool(self.connection_string) == bool(self.dsn):
            raise ValueError("give `connection_string` or `dsn`, one of them")
        return self

    def connection(self) -> str:
        return self.connection_string or f"DSN={self.dsn}"


def secrets_of(config: OdbcSourceConfig) -> list[str]:
    """The password, whether given apart or inside the connection string (PWD=...)."""
    found = [config.password or "", *inline_secrets(config.connection_string or "")]
    return [s for s in found if s]


def _arrow_odbc() -> Any:
    try:
        import arrow_odbc
    except ImportError as exc:  # the driver manager (libodbc) is missing
        raise TableReadError(
            f"ODBC is not available ({exc}): install unixODBC and a driver "
            "(Debian: apt-get install unixodbc odbc-postgresql odbc-mariadb)"
        ) from None
    return arrow_odbc


class OdbcSource:
    """One ODBC data source; each table read is its own connection."""

    def __init__(self, name: str, config: OdbcSourceConfig) -> None:
        self.name = name
        self.config = config
        register_secrets(secrets_of(config))

    def items(self, table: str, state: TableState | None = None) -> list[SourceItem]:
        start, fingerprint = starting_point(table, self.config.tables[table], state)
        return [self._item(table, start, fingerprint)]

    def _query(self, table: str, start: Any) -> tuple[str, list[str]]:
        spec = self.config.tables[table]
        select = spec.query or f"select * from {spec.table or table}"
        if spec.incremental is None or start is None:
            return select, []
        bound = minus_lookback(_from_json(start), spec.incremental.lookback)
        where = f"select * from ({select}) millpond_source where {spec.incremental.column} > ?"
        return where, [_parameter(bound)]

    def _item(self, table: str, start: Any, fingerprint: str) -> SourceItem:
        spec = self.config.tables[table]
        column = spec.incremental.column if spec.incremental else None
        state: dict[str, Any] = {"max": _from_json(start) if start is not None else None}

        def read() -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
            query, parameters = self._query(table, start)
            try:
                reader = _arrow_odbc().read_arrow_batches_from_odbc(
                    query,
                    self.config.connection(),
                    batch_size=self.config.batch_size,
                    max_bytes_per_batch=self.config.max_batch_mb * 1024 * 1024,
                    user=self.config.user,
                    password=self.config.password,
                    parameters=parameters or None,
                    login_timeout_sec=self.config.login_timeout_seconds,
                )
            except Exception as exc:  # arrow_odbc.Error: connection or SQL problem
                message = f"{self.name}.{table}: {mask(str(exc))}"
                if "connect" in str(exc).lower() or "login" in str(exc).lower():
                    raise ConnectionError(message) from None
                raise TableReadError(message) from None
            if column is not None and column not in reader.schema.names:
                raise TableReadError(
                    f"{self.name}.{table}: incremental column {column!r} is not in the result "
                    f"(columns: {', '.join(reader.schema.names)})"
                )
            return reader.schema, tracking_cursor(reader, column, state, lambda: None)

        return table_item(self.name, table, spec, start, fingerprint, read, state)

    def probe(self, timeout: float) -> Probe:
        """The data source logs in (within `timeout`, at most login_timeout_seconds) and
        answers `select 1`; a driver whose SQL wants more (Oracle's `from dual`) still logged
        in, which is what is asked."""
        where = "sources." + self.name + (".dsn" if self.config.dsn else ".connection_string")
        seconds = max(1, min(int(timeout), self.config.login_timeout_seconds))
        try:
            reader = _arrow_odbc().read_arrow_batches_from_odbc(
                "select 1",
                self.config.connection(),
                user=self.config.user,
                password=self.config.password,
                login_timeout_sec=seconds,
            )
            for _ in reader:
                pass
        except Exception as exc:
            text = mask(str(exc))
            if "connect" in text.lower() or "login" in text.lower() or "driver" in text.lower():
                return Probe(
                    problems=(
                        f"{where}: cannot connect: {text}; check the driver, server "
                        "and credentials",
                    )
                )
        reads = {
            table: "a query" if spec.query else f"table {spec.table or table}"
            for table, spec in self.config.tables.items()
        }
        return Probe(detail="logs in", reads=reads)

    def warnings(self) -> list[str]:
        return []


def _from_json(value: Any) -> Any:
    """A JSON cursor as a comparable Python value: ISO timestamps become datetimes."""
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def _parameter(value: Any) -> str:
    """ODBC parameters go as text; timestamps in the SQL literal form every driver takes."""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return str(value)


def _create(name: str, config: OdbcSourceConfig, stack: MillpondConfig) -> OdbcSource:
    return OdbcSource(name, config)


ODBC = SourceKind(config_model=OdbcSourceConfig, create=_create)
