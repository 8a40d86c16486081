"""Readers that turn one export file into Arrow, strictly, one module per format.

`open_file` gives landing a `FileRead`: the schema first (to check the table's contract before
anything is written), then the rows. Errors are `SourceFileError`s naming the file and, where
there is one, the line, kept to a few hundred characters.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from millpond.ingest.formats.base import BATCH_ROWS, BadRow, FileRead
from millpond.ingest.formats.csv import open_csv
from millpond.ingest.formats.errors import SourceFileError
from millpond.ingest.formats.json import open_json
from millpond.ingest.formats.options import CsvOptions, Format, ReadOptions
from millpond.ingest.formats.parquet import open_parquet
from millpond.ingest.formats.xlsx import open_xlsx

__all__ = [
    "BATCH_ROWS",
    "BadRow",
    "Batches",
    "CsvOptions",
    "FileRead",
    "Format",
    "ReadOptions",
    "SourceFileError",
    "open_file",
    "read_batches",
]

Batches = tuple[pa.Schema, Iterator[pa.RecordBatch]]
FORMATS = ("csv", "tsv", "xlsx", "parquet", "json", "jsonl")


def open_file(path: Path, fmt: str, read: ReadOptions) -> FileRead:
    """Open one file of a known format (see ingest.sources.files for formats by extension)."""
    if fmt == "csv":
        return open_csv(path, read)
    if fmt == "tsv":
        return open_csv(path, read, tab=True)
    if fmt == "xlsx":
        return open_xlsx(path, read)
    if fmt == "parquet":
        return open_parquet(path, read)
    if fmt in ("json", "jsonl"):
        return open_json(path, read, lines=fmt == "jsonl")
    raise SourceFileError(str(path), f"unsupported format {fmt!r} (one of {', '.join(FORMATS)})")


def read_batches(path: Path, fmt: str, options: CsvOptions | ReadOptions) -> Batches:
    """The schema and record batches of one file (for callers that only stream)."""
    read = options if isinstance(options, ReadOptions) else ReadOptions(csv=options)
    opened = open_file(path, fmt, read)
    return opened.schema, opened.batches()
