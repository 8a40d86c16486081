"""Load: raw partitions from the lake into the warehouse's raw schema, once each.

Which partitions a table holds is recorded in `raw._millpond_partitions` inside the same
DuckDB transaction that inserts the rows (state committed together with data, as dlt does),
so a crash between the insert and the bookkeeping cannot happen, and loading a partition twice
leaves it there once. Every row carries `_partition_id` and `_loaded_at`. The inserted row
count is checked against the manifest before commit: a mismatch rolls the partition back.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import duckdb
import pyarrow.dataset as pads

from ingest.lake import Lake, Manifest
from ingest.schema import SchemaMismatch, reconcile
from millpond.logs import logger

STATE_TABLE = "_millpond_partitions"


class LoadError(Exception):
    """A partition that could not be loaded; the raw table is left as it was."""


@dataclass
class LoadResult:
    """Partitions loaded by one load node, and their rows."""

    partitions: list[Manifest] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(m.rows for m in self.partitions)

    @property
    def bytes(self) -> int:
        return sum(m.bytes for m in self.partitions)


def raw_table_name(source: str, table: str) -> str:
    """The raw relation of a source table: raw.<source>__<table>."""
    return f"{source}__{table}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def ensure_state(con: duckdb.DuckDBPyConnection, schema: str) -> None:
    con.execute(f"create schema if not exists {_quote(schema)}")
    con.execute(
        f"""create table if not exists {_quote(schema)}.{STATE_TABLE} (
            partition_id varchar primary key,
            source varchar not null,
            table_name varchar not null,
            rows bigint not null,
            manifest_sha256 varchar not null,
            loaded_at timestamp not null
        )"""
    )


def loaded_partitions(
    con: duckdb.DuckDBPyConnection, schema: str, source: str, table: str
) -> set[str]:
    ensure_state(con, schema)
    rows = con.execute(
        f"select partition_id from {_quote(schema)}.{STATE_TABLE} "
        "where source = ? and table_name = ?",
        [source, table],
    ).fetchall()
    return {r[0] for r in rows}


def load_table(
    con: duckdb.DuckDBPyConnection, lake: Lake, schema: str, source: str, table: str
) -> LoadResult:
    """Load every landed partition of the table that the warehouse does not hold yet."""
    done = loaded_partitions(con, schema, source, table)
    pending = [m for m in lake.manifests(source, table) if m.partition_id not in done]
    result = LoadResult()
    for manifest in pending:
        load_partition(con, lake, schema, manifest)
        result.partitions.append(manifest)
        logger.info(f"{table}: loaded {manifest.partition_id} ({manifest.rows:,} rows)")
    if not pending:
        logger.info(f"{table}: nothing new to load")
    return result


def _expose_partition(con: duckdb.DuckDBPyConnection, lake: Lake, manifest: Manifest) -> bool:
    """Make the partition's rows readable as `partition_rows`; True if it is a DuckDB view."""
    paths = lake.part_paths(manifest)
    local = [lake.local_path(p) for p in paths]
    if all(local):  # DuckDB's own parallel Parquet reader (a view cannot take parameters)
        files = ", ".join(_literal(str(p)) for p in local)
        con.execute(
            "create or replace temp view partition_rows as "
            f"from read_parquet([{files}], hive_partitioning = false)"
        )
        return True
    # any other lake filesystem, through Arrow
    con.register("partition_rows", pads.dataset(paths, filesystem=lake.fs, format="parquet"))
    return False


# Errors that say the data cannot go in as it is: retrying the same partition cannot help.
DATA_ERRORS = (
    duckdb.ConversionException,
    duckdb.ConstraintException,
    duckdb.BinderException,
    duckdb.InvalidInputException,
)


def load_partition(
    con: duckdb.DuckDBPyConnection, lake: Lake, schema: str, manifest: Manifest
) -> list[str]:
    """Insert one partition's rows and record it, in one transaction; returns schema changes.

    Data problems (a type that cannot be widened, a missing column, a row count that differs
    from the manifest) raise LoadError; anything else (I/O, a lock) propagates unchanged, so the
    orchestrator may retry it.
    """
    name = raw_table_name(manifest.source, manifest.table)
    target = f"{_quote(schema)}.{_quote(name)}"
    select = "select *, ? as _partition_id, now()::timestamp as _loaded_at from partition_rows"
    is_view = False
    changes: list[str] = []
    con.execute("begin transaction")
    try:
        is_view = _expose_partition(con, lake, manifest)
        if table_exists(con, schema, name):
            changes = reconcile(con, schema, name, "partition_rows", target)
            con.execute(f"delete from {target} where _partition_id = ?", [manifest.partition_id])
            con.execute(f"insert into {target} by name {select}", [manifest.partition_id])
        else:
            con.execute(f"create table {target} as {select}", [manifest.partition_id])
        counted = con.execute(
            f"select count(*) from {target} where _partition_id = ?", [manifest.partition_id]
        ).fetchone()
        if not counted or counted[0] != manifest.rows:
            raise LoadError(
                f"{manifest.partition_id}: manifest says {manifest.rows} rows, "
                f"the warehouse received {counted[0] if counted else 0}"
            )
        con.execute(
            f"insert or replace into {_quote(schema)}.{STATE_TABLE} values (?, ?, ?, ?, ?, now())",
            [
                manifest.partition_id,
                manifest.source,
                manifest.table,
                manifest.rows,
                manifest.sha256,
            ],
        )
        con.execute("commit")
    except BaseException as exc:
        with contextlib.suppress(duckdb.Error):  # keep the original error, not the rollback's
            con.execute("rollback")
        if isinstance(exc, (SchemaMismatch, *DATA_ERRORS)):
            raise LoadError(f"{manifest.partition_id}: {exc}") from exc
        raise
    finally:
        with contextlib.suppress(duckdb.Error):
            if is_view:
                con.execute("drop view if exists partition_rows")
            else:
                con.unregister("partition_rows")
    return changes


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    row = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, name],
    ).fetchone()
    return bool(row and row[0])


def raw_row_count(con: duckdb.DuckDBPyConnection, schema: str, source: str, table: str) -> int:
    """Rows of the raw table now (0 before its first partition)."""
    if not table_exists(con, schema, raw_table_name(source, table)):
        return 0
    row = con.execute(
        f"select count(*) from {_quote(schema)}.{_quote(raw_table_name(source, table))}"
    ).fetchone()
    return int(row[0]) if row else 0
