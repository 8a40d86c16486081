"""What `millpond lake ls`, `millpond lake drop` and `millpond backfill` do, lake and warehouse
together (the lake half is ingest.replay; the warehouse half is the target's).

Each action holds the run lock (no run rebuilds marts while raw changes under it), the table's
extract lock (no landing of the table at the same time) and the warehouse's writer lock, and is
recorded in the ledger (`lake_actions`). Marts are rebuilt by the next `millpond run`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from millpond.core.locks import extract_lock, run_lock
from millpond.core.logs import logger
from millpond.core.registry import SOURCES, SourceItem, TableState
from millpond.ingest.lake import Manifest
from millpond.ingest.replay import (
    PartitionNotFound,
    PartitionRef,
    delete_partition,
    reland_partition,
)
from millpond.metadata.records import LakeAction, PartitionLanded
from millpond.runtime.context import RunContext


@dataclass(frozen=True)
class PartitionRow:
    """One line of `millpond lake ls`."""

    partition_id: str
    source: str
    table: str
    ingest_date: str
    rows: int
    files: int
    bytes: int
    loaded: bool
    # Why the partition cannot be used (an unreadable manifest, a folder gone from the lake).
    damage: str | None = None


def tables_of(ctx: RunContext, selector: str | None) -> list[tuple[str, str]]:
    """(source, table) pairs a `SOURCE[.TABLE]` selector names; ValueError for unknown ones."""
    sources = ctx.config.sources
    if not selector:
        return [(s, t) for s in sorted(sources) for t in sources[s].table_names()]
    source, _, table = selector.partition(".")
    if source not in sources:
        raise ValueError(f"no source {source!r} (sources: {', '.join(sorted(sources))})")
    tables = sources[source].table_names()
    if table and table not in tables:
        raise ValueError(f"source {source} has no table {table!r} (tables: {', '.join(tables)})")
    return [(source, t) for t in ([table] if table else tables)]


def list_partitions(ctx: RunContext, selector: str | None = None) -> list[PartitionRow]:
    """The lake's partitions with whether the warehouse holds them; damaged ones too (a
    manifest that cannot be read, a registered partition whose folder is gone), so they can
    be seen and dropped."""
    rows: list[PartitionRow] = []
    for source, table in tables_of(ctx, selector):
        loaded = ctx.target.loaded_partitions(source, table)
        manifests, damaged = ctx.lake.scan(source, table)
        rows += [
            PartitionRow(
                m.partition_id,
                source,
                table,
                m.ingest_date,
                m.rows,
                len(m.files),
                m.bytes,
                m.partition_id in loaded,
            )
            for m in manifests
        ]
        rows += [
            PartitionRow(
                d.partition_id,
                source,
                table,
                "",
                0,
                0,
                0,
                d.partition_id in loaded,
                f"damaged: manifest {d.manifest} cannot be read",
            )
            for d in damaged
        ]
        known = {m.partition_id for m in manifests} | {d.partition_id for d in damaged}
        rows += [
            PartitionRow(p, source, table, "", 0, 0, 0, True, "gone: its folder is not in the lake")
            for p in sorted(loaded - known)
        ]
    return rows


@contextlib.contextmanager
def _exclusive(ctx: RunContext, source: str, table: str) -> Iterator[None]:
    locks = ctx.config.locks_dir
    with (
        run_lock(locks, wait_seconds=60),
        extract_lock(locks, source, table),
        ctx.target.writer_lock(),
    ):
        yield


def drop(ctx: RunContext, partition_id: str) -> Manifest | None:
    """Take a landed partition back: out of the raw relation, then out of the lake.

    A damaged partition (its manifest cannot be read) goes the same way, folder and all, and
    so does one whose folder is already gone from the lake while the warehouse still reads
    it; those return None (there is no manifest to tell what they held)."""
    ref = PartitionRef.parse(partition_id)
    tables_of(ctx, f"{ref.source}.{ref.table}")
    partition_id = partition_id.strip("/")
    with _exclusive(ctx, ref.source, ref.table):
        manifests, damaged = ctx.lake.scan(ref.source, ref.table)
        manifest = next((m for m in manifests if m.partition_id == partition_id), None)
        broken = next((d for d in damaged if d.partition_id == partition_id), None)
        was_loaded = ctx.target.drop_partition(ref.source, ref.table, partition_id)
        if manifest is not None:
            delete_partition(ctx.lake, manifest)
        elif broken is not None:
            ctx.lake.fs.delete_dir(broken.folder)
        elif not was_loaded:
            folder = ctx.lake.partition_dir(ref.source, ref.table, ref.ingest_date, ref.run_id)
            raise PartitionNotFound(
                f"no partition {partition_id}: the lake has no folder {ctx.lake.uri(folder)} "
                "and the warehouse does not read it (see `millpond lake ls`)"
            )
    detail: dict[str, object] = {"was_loaded": was_loaded}
    if manifest is not None:
        detail["files"] = [f.name for f in manifest.files]
    else:
        detail["damage"] = broken.reason if broken else "folder gone from the lake"
    rows = manifest.rows if manifest else None
    ctx.ledger.write(LakeAction("drop", partition_id, ref.source, ref.table, rows, detail))
    return manifest


@dataclass(frozen=True)
class BackfillStep:
    """What backfill did to one partition: `reland` (read from the source again) or `replay`
    (registered again from the lake's own files)."""

    action: str
    partition_id: str
    rows: int


def backfill(
    ctx: RunContext, source: str, table: str | None, first: dt.date, last: dt.date
) -> list[BackfillStep]:
    """Re-land or replay every partition of `source` (one table or all) whose ingest date is in
    [first, last]; the raw relation then holds exactly those partitions again, so running it
    twice leaves raw, and the marts built from it, unchanged."""
    steps: list[BackfillStep] = []
    for src, tbl in tables_of(ctx, f"{source}.{table}" if table else source):
        with _exclusive(ctx, src, tbl):
            manifests = ctx.lake.manifests(src, tbl)  # ManifestDamaged names a bad one
            _refuse_gone(ctx, src, tbl, {m.partition_id for m in manifests})
            chosen = [m for m in manifests if first <= dt.date.fromisoformat(m.ingest_date) <= last]
            offered = _offered(ctx, src, tbl) if chosen else {}
            for manifest in chosen:
                steps.append(_backfill_one(ctx, manifest, offered))
            if chosen:
                ctx.target.load_table(ctx.lake, src, tbl)
    return steps


def _refuse_gone(ctx: RunContext, source: str, table: str, in_lake: set[str]) -> None:
    """A partition the warehouse reads but whose folder is gone from the lake breaks every
    reload of the table: say which, and how to take it out, before anything changes."""
    gone = sorted(ctx.target.loaded_partitions(source, table) - in_lake)
    if gone:
        raise ValueError(
            f"{source}.{table}: the warehouse reads {len(gone)} partition(s) whose folder is "
            f"gone from the lake ({', '.join(gone[:3])}{'...' if len(gone) > 3 else ''}); "
            f"take them out first with `millpond lake drop {gone[0]}` (or "
            "`millpond doctor --repair`)"
        )


def _backfill_one(
    ctx: RunContext, manifest: Manifest, offered: dict[str, SourceItem]
) -> BackfillStep:
    source, table = manifest.source, manifest.table
    items = [offered.get(f.sha256) for f in manifest.files]
    ctx.target.drop_partition(source, table, manifest.partition_id)
    if manifest.files and all(items):
        again = reland_partition(ctx.lake, manifest, [i for i in items if i is not None])
        ctx.ledger.write(
            PartitionLanded(
                source,
                table,
                again.partition_id,
                again.sha256,
                again.rows,
                again.bytes,
                dt.datetime.fromisoformat(again.landed_at),
                again.run_id,
            )
        )
        action, rows = "reland", again.rows
    else:
        action, rows = "replay", manifest.rows
    logger.info(f"{manifest.partition_id}: {action} ({rows:,} rows)")
    ctx.ledger.write(LakeAction(action, manifest.partition_id, source, table, rows))
    return BackfillStep(action, manifest.partition_id, rows)


def _offered(ctx: RunContext, source: str, table: str) -> dict[str, SourceItem]:
    """The items the source still offers, by fingerprint, when its items can be read again
    (files: content-addressed); a source without that (a query, an API) is replayed."""
    config = ctx.config.sources[source]
    created = SOURCES.get(config.kind).create(source, config, ctx.config)
    if not getattr(created, "relandable", False):
        return {}
    return {item.fingerprint: item for item in created.items(table, TableState())}
