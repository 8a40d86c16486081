"""Parquet exports: the file's own schema, streamed in batches."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from millpond.ingest.formats.base import BATCH_ROWS, FileRead, arrow_read, with_declared_types
from millpond.ingest.formats.errors import SourceFileError
from millpond.ingest.formats.options import ReadOptions


def open_parquet(path: Path, read: ReadOptions) -> FileRead:
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:
        raise SourceFileError(str(path), f"not a Parquet file ({exc})") from None
    if read.declared:
        table = with_declared_types(str(path), parquet.read(), read.declared)
        return arrow_read(path.name, table)
    return FileRead(
        path.name, parquet.schema_arrow, lambda: parquet.iter_batches(batch_size=BATCH_ROWS)
    )
