"""Raw relations on DuckDB without a second copy: views over the lake's Parquet partitions.

The lake's partitions are the raw storage. Loading a partition registers it: its files and its
bookkeeping row go into `raw._millpond_raw_files` / `raw._millpond_raw_partitions` and the view
`raw.<source>__<table>` is recreated over every registered file, all in one DuckDB transaction,
so a crash leaves the partition registered completely or not at all, and registering it twice
leaves it there once. DuckDB's parallel Parquet reader scans the files when dbt reads the view
(measured: a dbt build over such views takes the time it takes over copied tables, and the copy
itself cost ~11 s at TPC-H scale 1).

Partitions are inferred one by one, so a column may arrive as BIGINT in one and DOUBLE in the
next: the view casts every column to the reconciled type (lossless widening, new columns
nullable), and a partition that cannot join its table without loss is refused by name, before
it is registered. Every row carries `_partition_id` and `_loaded_at`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa

from millpond.core.logs import logger
from millpond.core.registry import LoadedTable
from millpond.core.sql import quote
from millpond.ingest.lake import Lake, Manifest, raw_table_name
from millpond.ingest.schema import (
    BOOKKEEPING,
    SchemaMismatch,
    missing_keys,
    reconciled_columns,
    stale_keys,
)

PARTITIONS = "_millpond_raw_partitions"
# Where older millpond versions (raw copied into tables) kept their partitions.
OLD_STATE = "_millpond_partitions"
FILES = "_millpond_raw_files"
FILE_COLUMN = "_millpond_file"


class LoadError(Exception):
    """A partition that cannot be loaded; the raw relation is left as it was, apart
    from the partitions before it (`loaded`, when there were any)."""

    retryable = False
    loaded: LoadedTable | None = None


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def ensure_state(con: duckdb.DuckDBPyConnection, schema: str) -> None:
    con.execute(f"create schema if not exists {quote(schema)}")
    con.execute(
        f"""create table if not exists {quote(schema)}.{PARTITIONS} (
            partition_id varchar primary key,
            source varchar not null,
            table_name varchar not null,
            rows bigint not null,
            manifest_sha256 varchar not null,
            loaded_at timestamp not null,
            landed_at varchar,
            replaces boolean default false
        )"""
    )
    for column in ("landed_at varchar", "replaces boolean default false"):  # older warehouses
        con.execute(f"alter table {quote(schema)}.{PARTITIONS} add column if not exists {column}")
    con.execute(
        f"""create table if not exists {quote(schema)}.{FILES} (
            path varchar primary key,
            partition_id varchar not null,
            source varchar not null,
            table_name varchar not null
        )"""
    )


def loaded_partitions(
    con: duckdb.DuckDBPyConnection, schema: str, source: str, table: str
) -> set[str]:
    ensure_state(con, schema)
    rows = con.execute(
        f"select partition_id from {quote(schema)}.{PARTITIONS} "
        "where source = ? and table_name = ?",
        [source, table],
    ).fetchall()
    return {r[0] for r in rows}


def load_table(
    con: duckdb.DuckDBPyConnection, lake: Lake, schema: str, source: str, table: str
) -> LoadedTable:
    """Load every landed partition of the table that the warehouse does not hold yet.

    Partitions are checked one by one against the reconciled columns, then the good ones are
    registered together and the view is recreated once (recreating it per partition re-reads
    every file's metadata each time: quadratic in partitions). A partition that cannot join
    the table is refused with LoadError after the ones before it are registered."""
    done = loaded_partitions(con, schema, source, table)
    manifests = lake.manifests(source, table)  # ManifestDamaged names an unreadable one
    gone = sorted(done - {m.partition_id for m in manifests})
    if gone:
        # The view reads their files, which are gone: every scan of it would fail.
        raise LoadError(
            f"{schema}.{raw_table_name(source, table)} reads {len(gone)} partition(s) whose "
            f"folder is gone from the lake ({', '.join(gone[:3])}"
            f"{'...' if len(gone) > 3 else ''}): `millpond lake drop {gone[0]}` takes one out "
            "of the warehouse, `millpond doctor --repair` all of them"
        )
    pending = [m for m in manifests if m.partition_id not in done]
    good, refused = load_partitions(con, lake, schema, source, table, pending)
    for manifest in good:
        logger.info(f"{table}: registered {manifest.partition_id} ({manifest.rows:,} rows)")
    if not pending:
        logger.info(f"{table}: nothing new to load")
    relation = f"{schema}.{raw_table_name(source, table)}"
    loaded = LoadedTable.of(relation, good, raw_row_count(con, schema, source, table))
    if refused is not None:
        refused.loaded = loaded  # the partitions before it are registered: the ledger says so
        raise refused
    return loaded


def _lake_files(lake: Lake, manifest: Manifest) -> list[str]:
    """The partition's parts as DuckDB reads them in place: local paths, or s3:// URLs that
    httpfs reads with the lake's secret (millpond.targets.duckdb.s3)."""
    paths = lake.part_paths(manifest)
    if lake.is_s3:
        return [lake.uri(p) for p in paths]
    local = [lake.local_path(p) for p in paths]
    if not all(local):
        raise LoadError(
            f"{manifest.partition_id}: the DuckDB target reads partitions in place and needs a "
            "local lake (lake.url file://...) or an S3 lake (s3://...)"
        )
    return [str(p) for p in local if p is not None]


def _columns(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, str]:
    return {row[0]: row[1] for row in con.execute(f"describe {sql}").fetchall()}


def _scan(files: Sequence[str]) -> str:
    """The files as one relation. Not hive-partitioned: the lake's folder names (ingest_date=,
    run=) are bookkeeping, and must never become, or overwrite, data columns."""
    listed = ", ".join(literal(f) for f in files)
    return (
        f"read_parquet([{listed}], union_by_name = true, hive_partitioning = false, "
        f"filename = {literal(FILE_COLUMN)})"
    )


# Errors that say the data cannot go in as it is: retrying the same partition cannot help.
DATA_ERRORS = (
    duckdb.ConversionException,
    duckdb.ConstraintException,
    duckdb.BinderException,
    duckdb.InvalidInputException,
)


def _checked_columns(
    con: duckdb.DuckDBPyConnection, lake: Lake, manifest: Manifest, columns: dict[str, str]
) -> tuple[list[str], dict[str, str], list[str]]:
    """The partition's files, the columns once it joins, and what changed; LoadError if its
    rows disagree with its manifest or its columns cannot join without loss."""
    files = _lake_files(lake, manifest)
    scan = f"(select * exclude ({quote(FILE_COLUMN)}) from {_scan(files)})"
    try:
        counted = con.execute(f"select count(*) from {scan}").fetchone()
        if not counted or counted[0] != manifest.rows:
            raise LoadError(
                f"{manifest.partition_id}: manifest says {manifest.rows} rows, "
                f"its Parquet files hold {counted[0] if counted else 0}"
            )
        incoming = _columns(con, scan)
        joined, changes = reconciled_columns(columns, incoming, manifest.declared_types)
    except (SchemaMismatch, *DATA_ERRORS) as exc:
        raise LoadError(f"{manifest.partition_id}: {exc}") from exc
    return files, joined, changes


def _register_partitions(
    con: duckdb.DuckDBPyConnection, schema: str, good: list[tuple[Manifest, list[str]]]
) -> None:
    """Upsert the partitions' bookkeeping rows and their files, each as one statement over an
    Arrow table: `executemany` runs an upsert per row (a thousand partitions took 30 s)."""
    partitions = pa.table(
        {
            "partition_id": [m.partition_id for m, _ in good],
            "source": [m.source for m, _ in good],
            "table_name": [m.table for m, _ in good],
            "rows": pa.array([m.rows for m, _ in good], pa.int64()),
            "manifest_sha256": [m.sha256 for m, _ in good],
            "landed_at": pa.array([m.landed_at for m, _ in good], pa.string()),
            "replaces": pa.array([m.replaces for m, _ in good], pa.bool_()),
        }
    )
    files = pa.table(
        {
            "path": pa.array([f for _, fs in good for f in fs], pa.string()),
            "partition_id": pa.array([m.partition_id for m, fs in good for _ in fs], pa.string()),
            "source": pa.array([m.source for m, fs in good for _ in fs], pa.string()),
            "table_name": pa.array([m.table for m, fs in good for _ in fs], pa.string()),
        }
    )
    con.register("_millpond_new_partitions", partitions)
    con.register("_millpond_new_files", files)
    try:
        con.execute(
            f"insert or replace into {quote(schema)}.{PARTITIONS} (partition_id, source, "
            "table_name, rows, manifest_sha256, loaded_at, landed_at, replaces) "
            "select partition_id, source, table_name, rows, manifest_sha256, now(), landed_at, "
            "replaces from _millpond_new_partitions"
        )
        con.execute(
            f"insert or replace into {quote(schema)}.{FILES} (path, partition_id, source, "
            "table_name) select path, partition_id, source, table_name from _millpond_new_files"
        )
    finally:
        con.unregister("_millpond_new_partitions")
        con.unregister("_millpond_new_files")


def load_partitions(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    schema: str,
    source: str,
    table: str,
    manifests: list[Manifest],
) -> tuple[list[Manifest], LoadError | None]:
    """Load the partitions that can join the table: register their files with their
    bookkeeping and recreate the view, in one transaction; returns them and the LoadError of
    the first one that cannot (none after it is tried). Anything but a data problem propagates
    unchanged, so the orchestrator may retry it."""
    name = raw_table_name(source, table)
    ensure_state(con, schema)
    columns = _existing_columns(con, schema, name)
    # Until a partition with rows is registered, column types are provisional: a header-only
    # export reads as all text and must not fix the table's types for good.
    typed = _loaded_rows(con, schema, source, table) > 0
    good: list[tuple[Manifest, list[str]]] = []
    changes: list[str] = []
    refused: LoadError | None = None
    for manifest in manifests:
        try:
            if manifest.rows == 0 and columns:
                # An empty partition (a header-only export) brings no types, only its count.
                files, _, _ = _checked_columns(con, lake, manifest, {})
                changed: list[str] = []
            else:
                # A whole snapshot, or the first rows after provisional types, start afresh.
                known = columns if typed and not manifest.replaces else {}
                files, columns, changed = _checked_columns(con, lake, manifest, known)
                typed = typed or manifest.rows > 0
        except LoadError as exc:
            refused = exc
            break
        good.append((manifest, files))
        changes += changed
    if not good:
        return [], refused
    newest = good[-1][0]
    unknown_keys = missing_keys(newest, columns)
    if unknown_keys:
        return [], LoadError(stale_keys(newest, unknown_keys, columns))
    con.execute("begin transaction")
    try:
        if relation_kind(con, schema, name) == "BASE TABLE":
            _replace_copied_table(con, schema, name, source, table, [m for m, _ in good])
        _register_partitions(con, schema, good)
        _recreate_view(con, schema, source, table, columns)
        if newest.primary_key:
            _recreate_latest_view(con, schema, name, newest.primary_key, newest.order_by)
        con.execute("commit")
    except BaseException as exc:
        with contextlib.suppress(duckdb.Error):  # keep the original error, not the rollback's
            con.execute("rollback")
        if isinstance(exc, DATA_ERRORS):
            raise LoadError(f"{name}: {exc}") from exc
        raise
    for change in changes:
        logger.warning(f"{name}: {change}")
    return [m for m, _ in good], refused


def load_partition(
    con: duckdb.DuckDBPyConnection, lake: Lake, schema: str, manifest: Manifest
) -> None:
    """Load one partition (see load_partitions); LoadError if it cannot join."""
    _, refused = load_partitions(con, lake, schema, manifest.source, manifest.table, [manifest])
    if refused is not None:
        raise refused


def _replace_copied_table(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    name: str,
    source: str,
    table: str,
    loading: list[Manifest],
) -> None:
    """Drop a raw table copied by an older millpond, once every partition it held is about to
    be registered from the lake; otherwise refuse, since its rows would be lost."""
    old_state = relation_kind(con, schema, OLD_STATE)
    held: set[str] = set()
    if old_state == "BASE TABLE":
        held = {
            r[0]
            for r in con.execute(
                f"select partition_id from {quote(schema)}.{OLD_STATE} "
                "where source = ? and table_name = ?",
                [source, table],
            ).fetchall()
        }
    missing = sorted(held - {m.partition_id for m in loading})
    if missing:
        raise LoadError(
            f"{schema}.{name} is a copied raw table holding partitions the lake no longer has "
            f"({', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}); restore them to "
            "the lake, or drop the table to accept losing their rows"
        )
    logger.info(f"{schema}.{name}: replacing the copied raw table by a view over the lake")
    con.execute(f"drop table {quote(schema)}.{quote(name)}")
    if old_state == "BASE TABLE":
        con.execute(
            f"delete from {quote(schema)}.{OLD_STATE} where source = ? and table_name = ?",
            [source, table],
        )


def _loaded_rows(con: duckdb.DuckDBPyConnection, schema: str, source: str, table: str) -> int:
    row = con.execute(
        f"select coalesce(sum(rows), 0) from {quote(schema)}.{PARTITIONS} "
        "where source = ? and table_name = ?",
        [source, table],
    ).fetchone()
    return int(row[0]) if row else 0


def _existing_columns(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> dict[str, str]:
    """The raw view's data columns now; none for an old copied raw table (from before raw
    relations became views), which registration replaces, re-registering its partitions."""
    if relation_kind(con, schema, name) != "VIEW":
        return {}
    columns = _columns(con, f"{quote(schema)}.{quote(name)}")
    return {c: t for c, t in columns.items() if c not in BOOKKEEPING}


def _recreate_view(
    con: duckdb.DuckDBPyConnection, schema: str, source: str, table: str, columns: dict[str, str]
) -> None:
    # The files of the newest whole snapshot (if any) and of every partition landed after it.
    rows = con.execute(
        f"""select f.path, r.partition_id, strftime(r.loaded_at, '%Y-%m-%d %H:%M:%S.%f')
        from {quote(schema)}.{FILES} as f
        join {quote(schema)}.{PARTITIONS} as r on r.partition_id = f.partition_id
        where f.source = $1 and f.table_name = $2 and coalesce(r.landed_at, '') >= coalesce(
            (select max(landed_at) from {quote(schema)}.{PARTITIONS}
             where source = $1 and table_name = $2 and replaces), '')
        order by f.path""",
        [source, table],
    ).fetchall()
    paths = [r[0] for r in rows]
    casts = ",\n    ".join(f"cast(p.{quote(c)} as {t}) as {quote(c)}" for c, t in columns.items())
    name = f"{quote(schema)}.{quote(raw_table_name(source, table))}"
    if len({r[1] for r in rows}) == 1:
        # One partition (a demo, a full snapshot): its bookkeeping as constants, no join, so
        # a scan costs what read_parquet costs (measured: a third of the joined view's time).
        _, partition_id, loaded_at = rows[0]
        con.execute(
            f"""create or replace view {name} as
select
    {casts},
    {literal(partition_id)} as _partition_id,
    timestamp {literal(loaded_at)} as _loaded_at
from {_scan(paths)} as p"""
        )
        return
    con.execute(
        f"""create or replace view {name} as
select
    {casts},
    f.partition_id as _partition_id,
    r.loaded_at as _loaded_at
from {_scan(paths)} as p
join {quote(schema)}.{FILES} as f on f.path = p.{quote(FILE_COLUMN)}
join {quote(schema)}.{PARTITIONS} as r on r.partition_id = f.partition_id"""
    )


def _recreate_latest_view(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    name: str,
    primary_key: list[str],
    order_by: str | None,
) -> None:
    """`<name>__latest`: each primary key once, the latest version (by the cursor column, then
    by landing order), beside the full history in `<name>`."""
    keys = ", ".join(f"v.{quote(k)}" for k in primary_key)
    order = [f"v.{quote(order_by)} desc nulls last"] if order_by else []
    order += ["r.landed_at desc", "v._partition_id desc"]
    con.execute(
        f"""create or replace view {quote(schema)}.{quote(name + "__latest")} as
select * exclude (_millpond_rank) from (
    select v.*, row_number() over (partition by {keys} order by {", ".join(order)})
        as _millpond_rank
    from {quote(schema)}.{quote(name)} as v
    join {quote(schema)}.{PARTITIONS} as r on r.partition_id = v._partition_id
) where _millpond_rank = 1"""
    )


def relation_kind(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> str | None:
    """'BASE TABLE', 'VIEW' or None."""
    row = con.execute(
        "select table_type from information_schema.tables "
        "where table_schema = ? and table_name = ?",
        [schema, name],
    ).fetchone()
    return str(row[0]) if row else None


def raw_row_count(con: duckdb.DuckDBPyConnection, schema: str, source: str, table: str) -> int:
    """Rows of the raw relation now (0 before its first partition)."""
    name = raw_table_name(source, table)
    if relation_kind(con, schema, name) is None:
        return 0
    row = con.execute(f"select count(*) from {quote(schema)}.{quote(name)}").fetchone()
    return int(row[0]) if row else 0


def lake_files(con: duckdb.DuckDBPyConnection, schema: str) -> list[Path]:
    """Every lake file the raw views read (for checks and maintenance)."""
    ensure_state(con, schema)
    return [Path(r[0]) for r in con.execute(f"select path from {quote(schema)}.{FILES}").fetchall()]


def drop_partition(
    con: duckdb.DuckDBPyConnection, schema: str, source: str, table: str, partition_id: str
) -> bool:
    """Take a partition out of the raw view (its files stay in the lake until the caller
    deletes them), in one transaction; False when it was not loaded. The view keeps its
    columns; with no partition left it is dropped, as before the first load."""
    if partition_id not in loaded_partitions(con, schema, source, table):
        return False
    name = raw_table_name(source, table)
    try:
        columns = _existing_columns(con, schema, name)
    except duckdb.IOException:
        # The view reads files that are gone (the partition's folder was deleted): the
        # columns come from the files that stay.
        columns = _remaining_columns(con, schema, source, table, partition_id)
    con.execute("begin transaction")
    try:
        con.execute(f"delete from {quote(schema)}.{FILES} where partition_id = ?", [partition_id])
        con.execute(
            f"delete from {quote(schema)}.{PARTITIONS} where partition_id = ?", [partition_id]
        )
        if loaded_partitions(con, schema, source, table):
            _recreate_view(con, schema, source, table, columns)
        else:
            con.execute(f"drop view if exists {quote(schema)}.{quote(name + '__latest')}")
            con.execute(f"drop view if exists {quote(schema)}.{quote(name)}")
        con.execute("commit")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("rollback")
        raise
    return True


def _remaining_columns(
    con: duckdb.DuckDBPyConnection, schema: str, source: str, table: str, partition_id: str
) -> dict[str, str]:
    """The data columns of the table's registered files other than `partition_id`'s."""
    rows = con.execute(
        f"select path from {quote(schema)}.{FILES} "
        "where source = ? and table_name = ? and partition_id <> ? order by path",
        [source, table, partition_id],
    ).fetchall()
    if not rows:
        return {}
    columns = _columns(
        con, f"(select * exclude ({quote(FILE_COLUMN)}) from {_scan([r[0] for r in rows])})"
    )
    return {c: t for c, t in columns.items() if c not in BOOKKEEPING}
