"""Bad rows kept aside: one Parquet file per source file, outside the raw layout.

    quarantine/<source>/<table>/ingest_date=YYYY-MM-DD/run=<run_id>/<part>.parquet

with the columns `file`, `line`, `reason`, `text` (the offending line, clipped). It sits beside
`raw/`, never inside it, so nothing that reads or globs the raw partitions ever sees these rows;
the partition's manifest lists its quarantine files and each file's bad-row count.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from millpond.ingest.formats import BadRow
from millpond.ingest.lake import Lake

SCHEMA = pa.schema(
    [
        pa.field("file", pa.string()),
        pa.field("line", pa.int64()),
        pa.field("reason", pa.string()),
        pa.field("text", pa.string()),
    ]
)


def quarantine_path(source: str, table: str, ingest_date: str, run_id: str, part: str) -> str:
    """Relative to the lake root (as the manifest records it)."""
    stem = PurePosixPath(part).stem
    return str(
        PurePosixPath(
            "quarantine",
            source,
            table,
            f"ingest_date={ingest_date}",
            f"run={run_id}",
            f"{stem}.parquet",
        )
    )


def write_quarantine(lake: Lake, relative: str, file: str, rows: list[BadRow]) -> None:
    path = lake.path(relative)
    lake.fs.create_dir(str(PurePosixPath(path).parent), recursive=True)
    table = pa.table(
        {
            "file": [file] * len(rows),
            "line": [r.line for r in rows],
            "reason": [r.reason for r in rows],
            "text": [r.text for r in rows],
        },
        schema=SCHEMA,
    )
    pq.write_table(table, path, filesystem=lake.fs, compression="zstd")


def read_quarantine(lake: Lake, relative: str) -> pa.Table:
    return pq.read_table(lake.path(relative), filesystem=lake.fs)
