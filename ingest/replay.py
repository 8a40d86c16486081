"""Taking back and re-landing partitions: the lake half of `millpond lake drop` and backfill.

Re-landing a partition reads its source files again (the source must still offer every one
of them, recognised by content hash) and writes the partition again under the same id, with
its original `landed_at`, so its place in the table's history is unchanged and doing it twice
gives the same partition. The old partition is kept aside (as `.bak` files under `_backfill/`,
a name no reader globbing `**/*.parquet` matches) until the new one is complete, and put back
if re-landing fails: a backfill never loses a partition.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from dataclasses import dataclass

import pyarrow.fs as pafs

from millpond.core.registry import SourceItem, TableState
from millpond.ingest.contract import TablePolicy
from millpond.ingest.lake import MANIFEST, Lake, Manifest
from millpond.ingest.landing import land_table

BACKUP = "_backfill"


class PartitionNotFound(Exception):
    """No partition of the lake has that id."""

    retryable = False


@dataclass(frozen=True)
class PartitionRef:
    """A partition id split into what locates it."""

    source: str
    table: str
    ingest_date: str
    run_id: str

    @classmethod
    def parse(cls, partition_id: str) -> PartitionRef:
        """`source/table/ingest_date=YYYY-MM-DD/run=<run>`; ValueError otherwise."""
        parts = partition_id.strip("/").split("/")
        if (
            len(parts) != 4
            or not parts[2].startswith("ingest_date=")
            or not parts[3].startswith("run=")
        ):
            raise ValueError(
                f"{partition_id!r} is not a partition id "
                "(SOURCE/TABLE/ingest_date=YYYY-MM-DD/run=RUN, as `millpond lake ls` prints)"
            )
        return cls(parts[0], parts[1], parts[2].removeprefix("ingest_date="), parts[3][4:])


def partition_folder(lake: Lake, manifest: Manifest) -> str:
    return lake.partition_dir(
        manifest.source, manifest.table, manifest.ingest_date, manifest.run_id
    )


def delete_partition(lake: Lake, manifest: Manifest) -> None:
    """Remove a partition from the lake: its manifest first, so an interruption leaves an
    orphan folder (removed by the next landing), never a manifest without its parts."""
    folder = partition_folder(lake, manifest)
    with contextlib.suppress(FileNotFoundError):
        lake.fs.delete_file(f"{folder}/{MANIFEST}")
    if lake.exists(folder):
        lake.fs.delete_dir(folder)


class _Offered:
    """A source that offers exactly the given items (the re-landed partition's files), under
    the contract they were accepted with (its declared types; columns as they were)."""

    def __init__(self, items: list[SourceItem], declared: dict[str, str] | None = None) -> None:
        self._items = items
        self._declared = declared or {}

    def policy(self, table: str) -> TablePolicy:
        return TablePolicy(on_schema_change="allow", declared=self._declared)

    def items(self, table: str, state: TableState | None = None) -> list[SourceItem]:
        return list(self._items)

    def warnings(self) -> list[str]:
        return []


def reland_partition(lake: Lake, manifest: Manifest, items: list[SourceItem]) -> Manifest:
    """Read `items` (the partition's source files) again into the same partition id."""
    folder = partition_folder(lake, manifest)
    backup = lake.path(BACKUP, manifest.partition_id)
    names = [p.name for p in manifest.parts] + [MANIFEST]
    if lake.exists(backup):
        lake.fs.delete_dir(backup)
    lake.fs.create_dir(backup, recursive=True)
    for name in names:
        lake.fs.copy_file(f"{folder}/{name}", f"{backup}/{name}.bak")
    try:
        delete_partition(lake, manifest)
        result = land_table(
            lake,
            manifest.source,
            _Offered(items, manifest.declared_types),
            manifest.table,
            manifest.run_id,
            dt.date.fromisoformat(manifest.ingest_date),
        )
        if result.manifest is None:
            why = "; ".join(r.reason for r in result.rejected)
            raise RuntimeError(
                f"{manifest.partition_id}: re-landing its files landed nothing"
                + (f" ({why})" if why else "")
            )
        again = dataclasses.replace(result.manifest, landed_at=manifest.landed_at)
        lake.write_text_atomic(f"{folder}/{MANIFEST}", again.to_json())
    except BaseException:
        _restore(lake, folder, backup, names)
        raise
    lake.fs.delete_dir(backup)
    return again


def _restore(lake: Lake, folder: str, backup: str, names: list[str]) -> None:
    """Put the kept partition back (the manifest last, so it is whole once visible)."""
    if lake.exists(folder):
        lake.fs.delete_dir(folder)
    lake.fs.create_dir(folder, recursive=True)
    for name in names:
        if name != MANIFEST:
            lake.fs.copy_file(f"{backup}/{name}.bak", f"{folder}/{name}")
    lake.fs.copy_file(f"{backup}/{MANIFEST}.bak", f"{folder}/{MANIFEST}")
    if lake.fs.get_file_info(backup).type == pafs.FileType.Directory:
        lake.fs.delete_dir(backup)
