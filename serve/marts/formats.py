"""Output formats of /marts: JSON, CSV, Parquet and Arrow IPC, written batch by batch.

Each writer turns a stream of Arrow record batches into a stream of bytes, so a large export
never sits in memory whole (Parquet keeps one file buffer: its footer comes last).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from millpond.serve.marts.json_rows import json_value, rows_json

__all__ = ["MEDIA_TYPES", "write_arrow", "write_csv", "write_json", "write_parquet"]

MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "arrow": "application/vnd.apache.arrow.stream",
}


def write_json(batches: pa.RecordBatchReader, head: dict[str, Any]) -> Iterator[bytes]:
    """`{...head, "rows": [ {...}, ... ]}`, one chunk per batch (rows written by json_rows)."""
    opening = json.dumps(head, default=json_value)[:-1]
    yield (opening + ', "rows": [').encode()
    first = True
    for batch in batches:
        if not batch.num_rows:
            continue
        text = rows_json(batch)
        yield text if first else b"," + text
        first = False
    yield b"]}"


def write_csv(batches: pa.RecordBatchReader) -> Iterator[bytes]:
    """CSV with a header line, then the rows of each batch."""
    header = True
    for batch in batches:
        sink = io.BytesIO()
        pacsv.write_csv(batch, sink, pacsv.WriteOptions(include_header=header))
        header = False
        yield sink.getvalue()
    if header:  # no batch at all: still say which columns there are
        yield (",".join(batches.schema.names) + "\n").encode()


def write_parquet(batches: pa.RecordBatchReader) -> Iterator[bytes]:
    """One Parquet file (zstd); streamed out once its footer is written."""
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, batches.schema, compression="zstd") as writer:
        for batch in batches:
            writer.write_batch(batch)
    view = sink.getbuffer()
    for start in range(0, len(view), 1 << 20):
        yield bytes(view[start : start + (1 << 20)])


def write_arrow(batches: pa.RecordBatchReader) -> Iterator[bytes]:
    """An Arrow IPC stream, one message per batch as it comes."""
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, batches.schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
            yield sink.getvalue()
            sink.seek(0)
            sink.truncate()
    yield sink.getvalue()
