"""Raw partitions into PostgreSQL: one bulk COPY per partition, bookkeeping in the same
transaction.

DuckDB reads the partition's Parquet (in parallel, straight from the lake) and streams it as
Arrow batches; each batch is encoded in PostgreSQL's binary COPY format (binary_copy: numpy and
Arrow kernels, no per-row Python) into `COPY ... FROM STDIN (FORMAT binary)`, so memory stays
bounded by one batch. A partition that widens a column goes as CSV instead, so PostgreSQL's
text parsing decides the wider values as it always did. Within one transaction the raw table is
created or widened (ingest.schema decides, losslessly), the partition's old rows (a retry) are
deleted, the rows are copied and counted against the manifest, and the partition is recorded in
`raw._millpond_raw_partitions`: a failure anywhere leaves the table as it was.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
from psycopg import sql

from millpond.core.logs import logger
from millpond.core.registry import LoadedTable
from millpond.ingest.lake import Lake, Manifest, raw_table_name
from millpond.ingest.schema import (
    BOOKKEEPING,
    SchemaMismatch,
    missing_keys,
    reconciled_columns,
    stale_keys,
)
from millpond.targets.postgres.binary_copy import (
    HEADER,
    TRAILER,
    binary_ready,
    encode_batch,
    select_expression,
)
from millpond.targets.postgres.types import from_postgres, normalized, to_postgres

STATE_TABLE = "_millpond_raw_partitions"
BATCH_ROWS = 122_880


class LoadError(Exception):
    """A partition that cannot be loaded; the raw table is left as it was, apart from the
    partitions before it (`loaded`, when there were any)."""

    retryable = False
    loaded: LoadedTable | None = None


def ensure_state(conn: psycopg.Connection, schema: str) -> None:
    with conn.transaction():
        # Two first loads at once would race on CREATE SCHEMA: serialize them.
        conn.execute("select pg_advisory_xact_lock(hashtext(%s))", [f"millpond.raw:{schema}"])
        conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                """create table if not exists {}.{} (
                    partition_id text primary key,
                    source text not null,
                    table_name text not null,
                    rows bigint not null,
                    manifest_sha256 text not null,
                    loaded_at timestamptz not null default now()
                )"""
            ).format(sql.Identifier(schema), sql.Identifier(STATE_TABLE))
        )


def load_table(url: str, lake: Lake, schema: str, source: str, table: str) -> LoadedTable:
    """COPY every landed partition of the table that PostgreSQL does not hold yet."""
    name = raw_table_name(source, table)
    with psycopg.connect(url) as conn:
        ensure_state(conn, schema)
        done = {
            r[0]
            for r in conn.execute(
                sql.SQL(
                    "select partition_id from {}.{} where source = %s and table_name = %s"
                ).format(sql.Identifier(schema), sql.Identifier(STATE_TABLE)),
                [source, table],
            ).fetchall()
        }
        conn.commit()
        pending = [m for m in lake.manifests(source, table) if m.partition_id not in done]
        loaded: list[Manifest] = []
        stale: str | None = None
        for manifest in pending:
            try:
                stale = load_partition(conn, lake, schema, manifest)
            except LoadError as exc:
                total = _count(conn, schema, name) if _columns(conn, schema, name) else 0
                exc.loaded = LoadedTable.of(f"{schema}.{name}", loaded, total)
                raise
            loaded.append(manifest)
            logger.info(f"{table}: loaded {manifest.partition_id} ({manifest.rows:,} rows)")
        if not pending:
            logger.info(f"{table}: nothing new to load")
        total = _count(conn, schema, name) if _columns(conn, schema, name) else 0
        conn.commit()
    if stale is not None:  # the newest partition's keys: the __latest view cannot follow them
        error = LoadError(stale)
        error.loaded = LoadedTable.of(f"{schema}.{name}", pending, total)
        raise error
    return LoadedTable.of(f"{schema}.{name}", pending, total)


def _columns(conn: psycopg.Connection, schema: str, name: str) -> dict[str, str]:
    rows = conn.execute(
        "select column_name, data_type, numeric_precision, numeric_scale "
        "from information_schema.columns where table_schema = %s and table_name = %s "
        "order by ordinal_position",
        [schema, name],
    ).fetchall()
    return {r[0]: from_postgres(r[1], r[2], r[3]) for r in rows}


def _count(conn: psycopg.Connection, schema: str, name: str) -> int:
    query = sql.SQL("select count(*) from {}.{}").format(
        sql.Identifier(schema), sql.Identifier(name)
    )
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


@contextlib.contextmanager
def _partition_reader(lake: Lake, manifest: Manifest) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection where `partition_rows` is the partition: DuckDB's parallel reader
    for a local lake, an Arrow dataset over the lake's filesystem otherwise."""
    con = duckdb.connect()
    try:
        paths = lake.part_paths(manifest)
        local = [lake.local_path(p) for p in paths]
        if all(local):
            files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in local)
            con.execute(f"create view partition_rows as from read_parquet([{files}])")
        else:
            con.register(
                "partition_rows", pads.dataset(paths, filesystem=lake.fs, format="parquet")
            )
        yield con
    finally:
        con.close()


def load_partition(
    conn: psycopg.Connection, lake: Lake, schema: str, manifest: Manifest
) -> str | None:
    """Create or widen the raw table, COPY the partition and record it, in one transaction;
    returns why the partition's keys could not be used (None when they could).

    Rows and bookkeeping commit together, so a partition is never half there and needs no
    clean-up before a retry. An empty partition (a header-only export) is recorded without
    touching the table's columns: its types (all text) would say nothing."""
    name = raw_table_name(manifest.source, manifest.table)
    table = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
    stale: str | None = None
    with _partition_reader(lake, manifest) as duck:
        incoming = {
            c: normalized(t) for c, t, *_ in duck.execute("describe partition_rows").fetchall()
        }
        changes: list[str] = []
        try:
            with conn.transaction():
                conn.execute("select pg_advisory_xact_lock(hashtext(%s))", [f"{schema}.{name}"])
                existing = {
                    c: t for c, t in _columns(conn, schema, name).items() if c not in BOOKKEEPING
                }
                if not manifest.rows and existing and manifest.replaces:
                    conn.execute(sql.SQL("delete from {}").format(table))  # an empty snapshot
                elif manifest.rows or not existing:
                    changes = _prepare_table(conn, table, existing, incoming, manifest)
                    counted = _copy_rows(
                        conn,
                        duck,
                        table,
                        incoming,
                        _columns(conn, schema, name),
                        manifest.partition_id,
                    )
                    if counted != manifest.rows:
                        raise LoadError(
                            f"{manifest.partition_id}: manifest says {manifest.rows} rows, "
                            f"PostgreSQL received {counted}"
                        )
                _record(conn, schema, manifest)
                unknown_keys = missing_keys(manifest, _columns(conn, schema, name))
                if unknown_keys:
                    # Landed before landing checked keys: its rows load, the view keeps
                    # the keys it had; the next partition (once the config is fixed) sets
                    # them, and until one does the table's load fails (load_table).
                    stale = stale_keys(manifest, unknown_keys, _columns(conn, schema, name))
                elif manifest.primary_key:
                    _latest_view(conn, schema, name, manifest.primary_key, manifest.order_by)
        except SchemaMismatch as exc:
            raise LoadError(f"{manifest.partition_id}: {exc}") from exc
        except psycopg.errors.DataError as exc:
            raise LoadError(f"{manifest.partition_id}: {exc}") from exc
        except psycopg.errors.FeatureNotSupported as exc:
            raise LoadError(
                f"{manifest.partition_id}: a column must be widened but views read it ({exc}); "
                f"drop the views over {schema}.{name} (dbt recreates its own on the next run) "
                "and run again"
            ) from exc
    for change in changes:
        logger.warning(f"{name}: {change}")
    return stale


def _prepare_table(
    conn: psycopg.Connection,
    table: sql.Composed,
    existing: dict[str, str],
    incoming: dict[str, str],
    manifest: Manifest,
) -> list[str]:
    """Create, widen or (for a whole snapshot) empty the raw table; returns what changed."""
    if manifest.replaces:
        # A whole snapshot: the older rows go, columns it lacks stay (null).
        compared = {c: t for c, t in existing.items() if c in incoming}
        columns, changes = reconciled_columns(compared, incoming, manifest.declared_types)
        columns = {**existing, **columns}
    else:
        columns, changes = reconciled_columns(existing, incoming, manifest.declared_types)
    _apply_columns(conn, table, existing, columns)
    if manifest.replaces and existing:
        conn.execute(sql.SQL("delete from {}").format(table))
    return changes


def _record(conn: psycopg.Connection, schema: str, manifest: Manifest) -> None:
    conn.execute(
        sql.SQL(
            "insert into {}.{} (partition_id, source, table_name, rows, manifest_sha256) "
            "values (%s, %s, %s, %s, %s) on conflict (partition_id) "
            "do update set rows = excluded.rows, loaded_at = now()"
        ).format(sql.Identifier(schema), sql.Identifier(STATE_TABLE)),
        [manifest.partition_id, manifest.source, manifest.table, manifest.rows, manifest.sha256],
    )


def _latest_view(
    conn: psycopg.Connection, schema: str, name: str, keys: list[str], order_by: str | None
) -> None:
    """`<name>__latest`: each primary key once, the latest version (by the cursor column, then
    by landing order), beside the full history in `<name>`."""
    key_list = sql.SQL(", ").join(sql.SQL("v.{}").format(sql.Identifier(k)) for k in keys)
    order: list[sql.Composable] = [key_list]
    if order_by:
        order.append(sql.SQL("v.{} desc nulls last").format(sql.Identifier(order_by)))
    order.append(sql.SQL("p.loaded_at desc, v._partition_id desc"))
    conn.execute(
        sql.SQL(
            "create or replace view {}.{} as select distinct on ({}) v.* from {}.{} as v "
            "join {}.{} as p on p.partition_id = v._partition_id order by {}"
        ).format(
            sql.Identifier(schema),
            sql.Identifier(name + "__latest"),
            key_list,
            sql.Identifier(schema),
            sql.Identifier(name),
            sql.Identifier(schema),
            sql.Identifier(STATE_TABLE),
            sql.SQL(", ").join(order),
        )
    )


def _apply_columns(
    conn: psycopg.Connection, table: sql.Composed, existing: dict[str, str], columns: dict[str, str]
) -> None:
    """Create the raw table, or add and widen its columns, to the reconciled types."""
    if not existing:
        defs: list[sql.Composable] = [
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(to_postgres(t)))
            for c, t in columns.items()
        ]
        defs += [
            sql.SQL("_partition_id text not null"),
            sql.SQL("_loaded_at timestamptz not null default now()"),
        ]
        conn.execute(sql.SQL("create table {} ({})").format(table, sql.SQL(", ").join(defs)))
        return
    for column, kind in columns.items():
        pg_type = sql.SQL(to_postgres(kind))
        if column not in existing:
            conn.execute(
                sql.SQL("alter table {} add column {} {}").format(
                    table, sql.Identifier(column), pg_type
                )
            )
        elif kind != existing[column]:
            conn.execute(
                sql.SQL("alter table {} alter column {} type {} using {}::{}").format(
                    table, sql.Identifier(column), pg_type, sql.Identifier(column), pg_type
                )
            )


def _copy_rows(
    conn: psycopg.Connection,
    duck: duckdb.DuckDBPyConnection,
    table: sql.Composed,
    incoming: dict[str, str],
    columns: dict[str, str],
    partition_id: str,
) -> int:
    """Stream the partition into COPY, one Arrow batch in memory at a time; returns the rows
    PostgreSQL took in. Binary COPY when every column keeps its type (binary_copy), CSV when
    the partition widens a column, so PostgreSQL's text parsing decides the wider values."""
    target = sql.SQL(", ").join(
        [*(sql.Identifier(c) for c in incoming), sql.Identifier("_partition_id")]
    )
    binary = binary_ready(incoming, columns)
    if binary:
        selected = ", ".join(
            select_expression(c, columns[c], _as_copy_text(c, t)) for c, t in incoming.items()
        )
        targets = [columns[c] for c in incoming]

        def encode(batch: pa.RecordBatch) -> pa.Buffer:
            return encode_batch(batch, targets, constants=(partition_id,))

        reader = duck.execute(f"select {selected} from partition_rows").fetch_record_batch(
            BATCH_ROWS
        )
        copy_format = sql.SQL("binary")
    else:
        selected = ", ".join(_as_copy_text(c, t) for c, t in incoming.items())
        encode = _csv_block
        reader = duck.execute(
            f"select {selected}, ? as _partition_id from partition_rows", [partition_id]
        ).fetch_record_batch(BATCH_ROWS)
        copy_format = sql.SQL("csv")
    cursor = conn.cursor()
    statement = sql.SQL("copy {} ({}) from stdin (format {})").format(table, target, copy_format)
    with cursor.copy(statement) as copy:
        if binary:
            copy.write(HEADER)
        for block in _blocks(reader, encode):
            copy.write(block)
        if binary:
            copy.write(TRAILER)
    return cursor.rowcount


def _as_copy_text(column: str, kind: str) -> str:
    """The column as COPY's CSV expects it: bytea as \\x hex, nested values as JSON, the rest
    as Arrow writes them."""
    quoted = '"' + column.replace('"', '""') + '"'
    if kind == "BLOB":
        return f"'\\x' || hex({quoted}) as {quoted}"
    if kind.endswith("]") or kind.startswith(("STRUCT", "MAP", "UNION")):
        return f"to_json({quoted})::varchar as {quoted}"
    if kind == "INTERVAL":
        return f"cast({quoted} as varchar) as {quoted}"
    return quoted


def _csv_block(batch: pa.RecordBatch) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    pacsv.write_csv(batch, sink, pacsv.WriteOptions(include_header=False))
    return sink.getvalue()


def _blocks(
    reader: pa.RecordBatchReader, encode: Callable[[pa.RecordBatch], pa.Buffer]
) -> Iterator[pa.Buffer]:
    """COPY blocks of the batches, made one batch ahead in a thread, so DuckDB reading and
    the encoding overlap with PostgreSQL parsing (Arrow and numpy release the GIL)."""
    blocks: queue.Queue[pa.Buffer | BaseException | None] = queue.Queue(maxsize=2)

    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in reader:
                if stop.is_set():  # the consumer gave up (COPY failed): read no further
                    return
                blocks.put(encode(batch))
            blocks.put(None)
        except BaseException as exc:  # handed to the consumer, raised there
            blocks.put(exc)

    producer = threading.Thread(target=produce, name="copy-encode", daemon=True)
    producer.start()
    try:
        while (item := blocks.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while producer.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                blocks.get(timeout=0.1)
        producer.join()


def loaded_partitions(url: str, schema: str, source: str, table: str) -> set[str]:
    """The partitions the raw table holds."""
    with psycopg.connect(url) as conn:
        ensure_state(conn, schema)
        rows = conn.execute(
            sql.SQL("select partition_id from {}.{} where source = %s and table_name = %s").format(
                sql.Identifier(schema), sql.Identifier(STATE_TABLE)
            ),
            [source, table],
        ).fetchall()
    return {r[0] for r in rows}


def drop_partition(url: str, schema: str, source: str, table: str, partition_id: str) -> bool:
    """Delete a partition's rows and its bookkeeping row in one transaction; False when the
    table did not hold it. (Rows an older whole snapshot replaced do not come back.)"""
    name = raw_table_name(source, table)
    with psycopg.connect(url) as conn:
        ensure_state(conn, schema)
        with conn.transaction():
            gone = conn.execute(
                sql.SQL("delete from {}.{} where partition_id = %s").format(
                    sql.Identifier(schema), sql.Identifier(STATE_TABLE)
                ),
                [partition_id],
            ).rowcount
            if gone and _columns(conn, schema, name):
                conn.execute(
                    sql.SQL("delete from {}.{} where _partition_id = %s").format(
                        sql.Identifier(schema), sql.Identifier(name)
                    ),
                    [partition_id],
                )
    return bool(gone)
