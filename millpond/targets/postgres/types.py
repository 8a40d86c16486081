"""DuckDB types (how partitions are inferred) to PostgreSQL column types and back.

Raw partitions are described in DuckDB's type names, and ingest.schema decides widening in
those names; the PostgreSQL target maps them to column types when it creates or alters a raw
table, and maps the table's columns back to compare them with the next partition.
"""

from __future__ import annotations

import re

TO_POSTGRES = {
    "BOOLEAN": "boolean",
    "TINYINT": "smallint",
    "SMALLINT": "smallint",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "HUGEINT": "numeric(38, 0)",
    "UTINYINT": "smallint",
    "USMALLINT": "integer",
    "UINTEGER": "bigint",
    "UBIGINT": "numeric(20, 0)",
    "FLOAT": "real",
    "DOUBLE": "double precision",
    "VARCHAR": "text",
    "DATE": "date",
    "TIME": "time",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP_S": "timestamp",
    "TIMESTAMP_MS": "timestamp",
    "TIMESTAMP_NS": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "BLOB": "bytea",
    "UUID": "uuid",
    "INTERVAL": "interval",
}
FROM_POSTGRES = {
    "boolean": "BOOLEAN",
    "smallint": "SMALLINT",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "real": "FLOAT",
    "double precision": "DOUBLE",
    "text": "VARCHAR",
    "character varying": "VARCHAR",
    "date": "DATE",
    "time without time zone": "TIME",
    "timestamp without time zone": "TIMESTAMP",
    "timestamp with time zone": "TIMESTAMP WITH TIME ZONE",
    "bytea": "BLOB",
    "uuid": "UUID",
    "interval": "INTERVAL",
}
_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")


def to_postgres(duckdb_type: str) -> str:
    """The PostgreSQL column type for a DuckDB type; text for anything without a match."""
    decimal = _DECIMAL.fullmatch(duckdb_type)
    if decimal:
        return f"numeric({decimal.group(1)}, {decimal.group(2)})"
    return TO_POSTGRES.get(duckdb_type, "text")


def from_postgres(data_type: str, precision: int | None, scale: int | None) -> str:
    """The DuckDB name of a PostgreSQL column type from information_schema.columns."""
    if data_type == "numeric":
        return f"DECIMAL({precision or 38},{scale or 0})" if precision else "DOUBLE"
    return FROM_POSTGRES.get(data_type, "VARCHAR")


# DuckDB types stored as another type here: compared in the stored type's name, so the second
# partition of a TIMESTAMP_NS or UINTEGER column matches the first.
_STORED_AS = {
    "TINYINT": "SMALLINT",
    "UTINYINT": "SMALLINT",
    "USMALLINT": "INTEGER",
    "UINTEGER": "BIGINT",
    "UBIGINT": "DECIMAL(20,0)",
    "HUGEINT": "DECIMAL(38,0)",
    "TIMESTAMP_S": "TIMESTAMP",
    "TIMESTAMP_MS": "TIMESTAMP",
    "TIMESTAMP_NS": "TIMESTAMP",
}


def normalized(duckdb_type: str) -> str:
    """The DuckDB name of the type a column of `duckdb_type` reads back as from PostgreSQL."""
    return _STORED_AS.get(duckdb_type, duckdb_type)
