"""Writing one file's rows as one Parquet part, at DuckDB's speed where it can.

Delimited text on a local lake goes through DuckDB's own `COPY (SELECT ... FROM read_csv(...))
TO ... (FORMAT parquet, COMPRESSION zstd)`: its parallel reader and writer, no Arrow batches
through Python. Everything else (workbooks, JSON, other sources, an S3 lake) streams Arrow
batches through pyarrow's writer to the lake's filesystem.

DuckDB's copy takes every core it is given, and four full-width copies at once were slower than
streaming (measured earlier on 2 cores). Splitting the cores among the copies in flight was
worse still for the big file: a copy's threads are fixed when it starts, so the largest export,
started beside three small ones, copied on one thread long after they were done (TPC-H 0.1:
lineitem 2.7 s, the whole landing 2.2x DuckDB's serial COPY). So copies take turns, each with
every thread of the budget, which is exactly what DuckDB's own serial COPY does; what an
extract does around its copy (listing, hashing, the contract, the manifest) still overlaps.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from millpond.ingest.formats import FileRead
from millpond.ingest.lake import Lake

_turn = threading.Lock()


def thread_budget() -> int:
    """Threads for DuckDB in this process (MILLPOND_LANDING_THREADS, else the cores)."""
    configured = os.environ.get("MILLPOND_LANDING_THREADS")
    return max(1, int(configured)) if configured else max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def copy_turn() -> Iterator[int]:
    """This process's one copy at a time; yields the threads it may use (all of them)."""
    with _turn:
        yield thread_budget()


def _null_columns(fill: dict[str, str]) -> list[str]:
    return [
        f'cast(null as {kind}) as "{name.replace(chr(34), chr(34) * 2)}"'
        for name, kind in fill.items()
    ]


_ARROW = {
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "SMALLINT": pa.int16(),
    "TINYINT": pa.int8(),
    "DOUBLE": pa.float64(),
    "FLOAT": pa.float32(),
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
    "TIMESTAMP WITH TIME ZONE": pa.timestamp("us", tz="UTC"),
}


def _arrow_type(kind: str) -> pa.DataType:
    if kind.startswith("DECIMAL("):
        precision, scale = kind[8:-1].split(",")
        return pa.decimal128(int(precision), int(scale))
    return _ARROW.get(kind, pa.string())


def write_part(lake: Lake, target: str, file: FileRead, fill: dict[str, str]) -> int:
    """Write the file's rows (plus `fill`: columns it lacks, as NULL) to `target`, a path on
    the lake's filesystem; returns the rows written. The one place a part is written."""
    local = lake.local_path(target)
    if file.copy_to is not None and local is not None:
        with copy_turn() as threads:
            return file.copy_to(str(local), _null_columns(fill), threads)
    schema = file.schema
    for name, kind in fill.items():
        schema = schema.append(pa.field(name, _arrow_type(kind)))
    rows = 0
    with pq.ParquetWriter(target, schema, filesystem=lake.fs, compression="zstd") as writer:
        for batch in file.batches():
            if fill:
                nulls = [pa.nulls(batch.num_rows, schema.field(n).type) for n in fill]
                batch = pa.RecordBatch.from_arrays([*batch.columns, *nulls], schema=schema)
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows
