"""Extract: land new export files of one table as one immutable raw partition.

A file is identified by its content (sha256), not its name: a file already in some partition of
the table is skipped, so re-running a run, or a day with no new exports, lands nothing. Parts
are written first and the manifest last; a retry of the same run finds either a complete
partition (and returns it) or leftovers without a manifest (and removes them first).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ingest.formats import SourceFileError, read_batches
from ingest.lake import MANIFEST, Lake, Manifest, PartFile, SourceFile
from millpond.config import FilesSourceConfig
from millpond.logs import logger

EXTENSIONS = {".csv": "csv", ".xlsx": "xlsx"}


@dataclass(frozen=True)
class LandingResult:
    """What one extract did: the new partition (if any) and which files it skipped."""

    manifest: Manifest | None
    skipped: list[str]

    @property
    def rows(self) -> int:
        return self.manifest.rows if self.manifest else 0

    @property
    def bytes(self) -> int:
        return self.manifest.bytes if self.manifest else 0


def file_format(path: Path, configured: str) -> str:
    if configured != "auto":
        return configured
    try:
        return EXTENSIONS[path.suffix.lower()]
    except KeyError:
        raise SourceFileError(str(path), f"unknown file type {path.suffix!r}") from None


def table_for(file_name: str, tables: Iterable[str]) -> str | None:
    """The declared table a file feeds: its name is the table, or the table plus a suffix
    starting with a digit (`orders_2024-01-31.csv`); the longest such table wins, so a table
    named `sales_2023` still gets `sales_2023.csv`."""
    stem = file_name.split(".", 1)[0].lower()
    matches = [t for t in tables if stem == t or re.match(rf"{re.escape(t)}[_-]\d", stem)]
    return max(matches, key=len) if matches else None


def discover(inbox: Path, source: FilesSourceConfig, table: str) -> list[Path]:
    """Files of the inbox that feed this table, in name order."""
    if not inbox.is_dir():
        return []
    pattern = source.tables[table].pattern
    files = [p for p in inbox.iterdir() if p.is_file() and not p.name.startswith((".", "~$"))]
    if pattern:
        chosen = [p for p in files if fnmatch.fnmatch(p.name, pattern)]
    else:
        chosen = [
            p
            for p in files
            if p.suffix.lower() in EXTENSIONS and table_for(p.name, source.tables) == table
        ]
    return sorted(chosen)


def unclaimed_files(inbox: Path, source: FilesSourceConfig) -> list[Path]:
    """Inbox files that feed no declared table: reported, never silently ignored."""
    if not inbox.is_dir():
        return []
    claimed = {p for t in source.tables for p in discover(inbox, source, t)}
    return sorted(
        p
        for p in inbox.iterdir()
        if p.is_file() and p not in claimed and not p.name.startswith((".", "~$"))
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def land_table(
    lake: Lake,
    source_name: str,
    source: FilesSourceConfig,
    inbox: Path,
    table: str,
    run_id: str,
    today: dt.date | None = None,
) -> LandingResult:
    """Land every new file of `table` as one partition of this run (or nothing).

    Not safe to run twice at once for one table: callers hold the table's extract lock
    (`millpond.execute` does)."""
    ingest_date = (today or dt.date.today()).isoformat()
    folder = lake.partition_dir(source_name, table, ingest_date, run_id)
    existing = lake.manifests(source_name, table)
    mine = [m for m in existing if m.run_id == run_id]
    if mine:  # a retry of this run's node: the partition is already complete
        return LandingResult(mine[0], [])
    if not inbox.is_dir():
        raise SourceFileError(
            str(inbox), f"inbox folder does not exist (sources.{source_name}.path)"
        )
    known = {f.sha256 for m in existing for f in m.files}
    files = discover(inbox, source, table)
    if source.settle_seconds:
        cutoff = time.time() - source.settle_seconds
        arriving = [p for p in files if p.stat().st_mtime > cutoff]
        for path in arriving:
            logger.info(
                f"{table}: {path.name} changed in the last {source.settle_seconds:g} s; next run"
            )
        files = [p for p in files if p not in arriving]
    new: list[tuple[Path, str]] = []
    skipped: list[str] = []
    for path in files:
        digest = sha256_of(path)
        if digest in known:
            skipped.append(path.name)
        else:
            known.add(digest)
            new.append((path, digest))
    removed = lake.remove_orphans(source_name, table)  # interrupted landings never happened
    if removed:
        logger.info(f"{table}: removed {removed} partition folders left by interrupted landings")
    if not new:
        logger.info(f"{table}: no new files ({len(skipped)} already landed)")
        return LandingResult(None, skipped)
    lake.fs.create_dir(folder, recursive=True)
    sources: list[SourceFile] = []
    parts: list[PartFile] = []
    schema: pa.Schema | None = None
    for index, (path, digest) in enumerate(new):
        part_name = f"part-{index:05d}.parquet"
        rows, schema = _write_part(lake, f"{folder}/{part_name}", path, source, schema)
        size = lake.fs.get_file_info(f"{folder}/{part_name}").size or 0
        parts.append(PartFile(part_name, rows, size))
        sources.append(SourceFile(path.name, digest, path.stat().st_size, rows))
        logger.info(f"{table}: landed {path.name} ({rows:,} rows)")
    assert schema is not None
    manifest = Manifest(
        partition_id=lake.partition_id(source_name, table, ingest_date, run_id),
        source=source_name,
        table=table,
        run_id=run_id,
        ingest_date=ingest_date,
        landed_at=dt.datetime.now(dt.UTC).isoformat(),
        rows=sum(p.rows for p in parts),
        bytes=sum(p.bytes for p in parts),
        schema=[{"name": f.name, "type": str(f.type)} for f in schema],
        files=sources,
        parts=parts,
    )
    lake.write_text_atomic(f"{folder}/{MANIFEST}", manifest.to_json())
    return LandingResult(manifest, skipped)


def _write_part(
    lake: Lake, target: str, path: Path, source: FilesSourceConfig, schema: pa.Schema | None
) -> tuple[int, pa.Schema]:
    """Stream one file into one Parquet part; all files of a partition share one schema.

    Batches go through pyarrow's writer straight to the lake's filesystem. (DuckDB's own
    parallel COPY ... TO parquet was tried: faster for one file alone, but 4 extracts at once
    each taking every core made a whole scale-1 run ~30% slower here.)
    """
    file_schema, batches = read_batches(path, file_format(path, source.format), source.csv)
    if schema is not None and not file_schema.equals(schema):
        raise SourceFileError(
            str(path),
            "columns or types differ from the other new files of this table: "
            f"{file_schema} vs {schema}",
        )
    rows = 0
    with pq.ParquetWriter(target, file_schema, filesystem=lake.fs, compression="zstd") as writer:
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows, file_schema
