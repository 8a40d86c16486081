"""Extract: land what a source offers for one table as one immutable raw partition.

Every item a source offers carries a fingerprint (a file's sha256, a query's cursor range): one
already in some partition of the table is skipped, so re-running a run, or a day with nothing
new, lands nothing. Parts are written first, under hidden names (ingest.staging), renamed once
all are complete, and the manifest last; a retry of the same run finds either a complete
partition (and returns it) or leftovers without a manifest (and removes them first).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from ingest.formats import SourceFileError
from ingest.lake import MANIFEST, Lake, Manifest, PartFile, SourceFile
from ingest.schema import RESERVED_COLUMNS
from ingest.staging import discard, publish_parts, staged_name
from millpond.core.logs import logger
from millpond.core.registry import Source, SourceItem, TableState


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


def land_table(
    lake: Lake,
    source_name: str,
    source: Source,
    table: str,
    run_id: str,
    today: dt.date | None = None,
) -> LandingResult:
    """Land every new item (file, query result) of `table` as one partition of this run.

    Kind-agnostic: the source says what it offers, with fingerprints; what is already in a
    partition of the table is skipped. Not safe to run twice at once for one table: callers
    hold the table's extract lock (the extract node does)."""
    ingest_date = (today or dt.date.today()).isoformat()
    folder = lake.partition_dir(source_name, table, ingest_date, run_id)
    existing = lake.manifests(source_name, table)
    mine = [m for m in existing if m.run_id == run_id]
    if mine:  # a retry of this run's node: the partition is already complete
        return LandingResult(mine[0], [])
    known = {f.sha256 for m in existing for f in m.files}
    new: list[SourceItem] = []
    skipped: list[str] = []
    for item in source.items(table, table_state(existing)):
        if item.fingerprint in known:
            skipped.append(item.name)
        else:
            known.add(item.fingerprint)
            new.append(item)
    removed = lake.remove_orphans(source_name, table)  # interrupted landings never happened
    if removed:
        logger.info(f"{table}: removed {removed} partition folders left by interrupted landings")
    if not new:
        logger.info(f"{table}: no new files ({len(skipped)} already landed)")
        return LandingResult(None, skipped)
    lake.fs.create_dir(folder, recursive=True)
    try:
        landed = _write_parts(lake, folder, table, new)
    except BaseException:
        discard(lake, folder)  # a failed landing leaves nothing, not even a hidden part
        raise
    sources, parts, schema, cursor = landed
    if schema is None:  # every item was an empty incremental read
        lake.fs.delete_dir(folder)
        return LandingResult(None, skipped)
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
        cursor=cursor,
        replaces=any(item.replace for item in new),
        primary_key=list(new[0].primary_key),
        order_by=new[0].order_by,
    )
    try:
        publish_parts(lake, folder, [p.name for p in parts])
        lake.write_text_atomic(f"{folder}/{MANIFEST}", manifest.to_json())
    except BaseException:
        discard(lake, folder)
        raise
    return LandingResult(manifest, skipped)


def _write_parts(
    lake: Lake, folder: str, table: str, new: list[SourceItem]
) -> tuple[list[SourceFile], list[PartFile], pa.Schema | None, object]:
    """Write each new item as one part under its staged (hidden) name."""
    sources: list[SourceFile] = []
    parts: list[PartFile] = []
    schema: pa.Schema | None = None
    cursor = None
    for item in new:
        part_name = f"part-{len(parts):05d}.parquet"
        staged = f"{folder}/{staged_name(part_name)}"
        rows, item_schema = _write_part(lake, staged, item, schema)
        if item.cursor is not None:
            cursor = item.cursor()
        if rows == 0 and not item.land_if_empty:
            lake.fs.delete_file(staged)
            logger.info(f"{table}: nothing new from {item.name}")
            continue
        schema = item_schema
        size = lake.fs.get_file_info(staged).size or 0
        parts.append(PartFile(part_name, rows, size))
        sources.append(SourceFile(item.name, item.fingerprint, item.size, rows))
        logger.info(f"{table}: landed {item.name} ({rows:,} rows)")
    return sources, parts, schema, cursor


def table_state(manifests: list[Manifest]) -> TableState:
    """The cursor of the newest partition that has one: a partition's manifest is written
    after its data, so a cursor read here never runs ahead of the data landed."""
    with_cursor = [m for m in manifests if m.cursor is not None]
    return TableState(cursor=with_cursor[-1].cursor if with_cursor else None)


def _write_part(
    lake: Lake, target: str, item: SourceItem, schema: pa.Schema | None
) -> tuple[int, pa.Schema]:
    """Stream one file into one Parquet part; all files of a partition share one schema.

    Batches go through pyarrow's writer straight to the lake's filesystem. (DuckDB's own
    parallel COPY ... TO parquet was tried: faster for one file alone, but 4 extracts at once
    each taking every core made a whole scale-1 run ~30% slower here.)
    """
    file_schema, batches = item.read()
    reserved = sorted(set(file_schema.names) & RESERVED_COLUMNS)
    if reserved:
        raise SourceFileError(
            item.name,
            f"column {', '.join(reserved)} is reserved for millpond's bookkeeping in raw "
            "relations; rename it in the export (or the query)",
        )
    if schema is not None and not file_schema.equals(schema):
        raise SourceFileError(
            item.name,
            "columns or types differ from the other new files of this table: "
            f"{file_schema} vs {schema}",
        )
    rows = 0
    with pq.ParquetWriter(target, file_schema, filesystem=lake.fs, compression="zstd") as writer:
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows, file_schema
