"""Writing one file's rows as one Parquet part, at DuckDB's speed where it can.

Delimited text on a local lake goes through DuckDB's own `COPY (SELECT ... FROM read_csv(...))
TO ... (FORMAT parquet, COMPRESSION zstd)`: its parallel reader and writer, no Arrow batches
through Python. Everything else (workbooks, JSON, other sources, an S3 lake) streams Arrow
batches through pyarrow's writer to the lake's filesystem.

DuckDB's copy takes every core it is given, and four full-width copies at once were slower than
streaming (measured earlier on 2 cores), so the extracts running at once share one thread
budget: the machine's cores, split among the copies in flight.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from ingest.formats import FileRead
from ingest.lake import Lake

_lock = threading.Lock()
_active = 0


def thread_budget() -> int:
    """Threads for DuckDB in this process (MILLPOND_LANDING_THREADS, else the cores)."""
    configured = os.environ.get("MILLPOND_LANDING_THREADS")
    return max(1, int(configured)) if configured else max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def share_of_threads() -> Iterator[int]:
    """This copy's share of the budget, counting the copies running now (itself included)."""
    global _active
    with _lock:
        _active += 1
        share = max(1, thread_budget() // _active)
    try:
        yield share
    finally:
        with _lock:
            _active -= 1


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
        with share_of_threads() as threads:
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
