"""Landing: what the extract stage does with a table, kind-agnostic: land what its source
offers as one immutable raw partition of the run.

Every item a source offers carries a fingerprint (a file's sha256): one already in some
partition of the table is skipped, so re-running a run, or a day with nothing new, lands
nothing. An incremental read (a query, an API) is asked on every run and known by what it
returned (`SourceItem.report`): a read identical to a landed one is not landed again, and a
cursor that stays put while its source keeps sending records is a warning (or an error) that
names the table, counted across runs in the lake (ingest.reads). Parts are written first, under
hidden names (ingest.staging; each item by ingest.landing_items), renamed once all are complete,
and the manifest last; a retry of the same run finds either a complete partition (and returns
it) or leftovers without a manifest (and removes them first). Before anything is written, the
table's primary key and cursor column are checked against the data (ingest.contract.check_keys):
a partition never carries keys its rows do not have.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from millpond.core.logs import logger
from millpond.core.registry import Source, SourceItem, TableState
from millpond.ingest.contract import TablePolicy, contract_columns
from millpond.ingest.lake import MANIFEST, Lake, Manifest
from millpond.ingest.landing_items import land_items
from millpond.ingest.landing_state import PartitionInProgress, TableLanding
from millpond.ingest.reads import Read, now, record_read, stalled_runs
from millpond.ingest.rejections import Rejection
from millpond.ingest.staging import discard, publish_parts


class CursorStalled(Exception):
    """An incremental table's cursor has not moved for the configured number of runs while
    its source kept sending records, and its settings say to fail (`on_stall: fail`)."""

    retryable = False


@dataclass(frozen=True)
class LandingResult:
    """What one extract did: the new partition (if any), which files it skipped, which it
    rejected (nothing of them landed), which wait for the next run, and bad rows kept aside."""

    manifest: Manifest | None
    skipped: list[str]
    rejected: list[Rejection] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # Things the user must hear (a stalled cursor), also kept in the node's detail.
    warnings: list[str] = field(default_factory=list)
    # An incremental read: records sent, dropped as landed already, landed, the cursor
    # before and after, and how many runs in a row it has stalled.
    read: dict[str, object] | None = None

    @property
    def rows(self) -> int:
        return self.manifest.rows if self.manifest else 0

    @property
    def bytes(self) -> int:
        return self.manifest.bytes if self.manifest else 0

    @property
    def bad_rows(self) -> int:
        return sum(f.bad_rows for f in self.manifest.files) if self.manifest else 0


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
    partition of the table is skipped. Each new item is checked against the table's contract
    (ingest.contract) before the manifest is written: one that breaks it is rejected, by name,
    and the others still land. Not safe to run twice at once for one table: callers hold the
    table's extract lock (the extract node does)."""
    started = time.monotonic()
    ingest_date = (today or dt.date.today()).isoformat()
    existing = lake.manifests(source_name, table)
    mine = [m for m in existing if m.run_id == run_id]
    if mine:  # a retry of this run's node: the partition is already complete
        return LandingResult(mine[0], [])
    known = {f.sha256 for m in existing for f in m.files}
    state = table_state(existing)
    new, skipped = _new_items(source.items(table, state), known)
    removed = lake.remove_orphans(source_name, table)  # interrupted landings never happened
    if removed:
        logger.info(f"{table}: removed {removed} partition folders left by interrupted landings")
    if not new:
        logger.info(f"{table}: no new files ({len(skipped)} already landed)")
        return LandingResult(None, skipped)
    landing = TableLanding(
        lake=lake,
        source_name=source_name,
        table=table,
        run_id=run_id,
        ingest_date=ingest_date,
        folder=lake.partition_dir(source_name, table, ingest_date, run_id),
        policy=_policy(source, table),
        known=known,
        partition=PartitionInProgress(contract_columns(existing), keys=_keys_of(existing)),
    )
    folder = landing.folder
    lake.fs.create_dir(folder, recursive=True)
    try:
        cursor = land_items(landing, new)
        warnings, read = _check_stall(landing, state)
    except BaseException:
        discard(lake, folder)  # a failed landing leaves nothing, not even a hidden part
        raise
    seconds = time.monotonic() - started
    outcome = (skipped, landing.rejected, landing.deferred, seconds, warnings, read)
    if landing.partition.schema is None:  # nothing landed: every item rejected, deferred or empty
        lake.fs.delete_dir(folder)
        return LandingResult(None, *outcome)
    manifest = _manifest(landing, new, cursor)
    try:
        publish_parts(lake, folder, [p.name for p in manifest.parts])
        lake.write_text_atomic(f"{folder}/{MANIFEST}", manifest.to_json())
    except BaseException:
        discard(lake, folder)
        raise
    if manifest.rows and seconds > 0:
        logger.info(f"{table}: {manifest.rows:,} rows in {seconds:.1f} s")
    return LandingResult(manifest, *outcome)


def _new_items(offered: list[SourceItem], known: set[str]) -> tuple[list[SourceItem], list[str]]:
    """The items whose fingerprint no partition of the table holds (added to `known`, so an
    item offered twice lands once), and the names of the others."""
    new: list[SourceItem] = []
    skipped: list[str] = []
    for item in offered:
        if item.fingerprint in known:
            skipped.append(item.name)
        else:
            known.add(item.fingerprint)
            new.append(item)
    return new, skipped


def _manifest(landing: TableLanding, new: list[SourceItem], cursor: object) -> Manifest:
    """The manifest of the partition landed: written last, it is what makes it exist."""
    lake, partition = landing.lake, landing.partition
    parts = partition.parts
    assert partition.schema is not None  # something landed
    return Manifest(
        partition_id=lake.partition_id(
            landing.source_name, landing.table, landing.ingest_date, landing.run_id
        ),
        source=landing.source_name,
        table=landing.table,
        run_id=landing.run_id,
        ingest_date=landing.ingest_date,
        landed_at=dt.datetime.now(dt.UTC).isoformat(),
        rows=sum(p.rows for p in parts),
        bytes=sum(p.bytes for p in parts),
        schema=[{"name": f.name, "type": str(f.type)} for f in partition.schema],
        files=partition.files,
        parts=parts,
        cursor=cursor,
        replaces=any(item.replace for item in new),
        primary_key=list(new[0].primary_key),
        order_by=new[0].order_by,
        declared_types=dict(landing.policy.declared),
        quarantine=partition.quarantine,
        boundary=partition.boundary,
    )


def _check_stall(
    landing: TableLanding, state: TableState
) -> tuple[list[str], dict[str, object] | None]:
    """Record each incremental read with a stall check (ingest.reads) and say when the
    cursor has not moved for `stall.runs` runs in a row while the source kept sending
    records: a warning, or CursorStalled (nothing lands) when the source's settings say so."""
    warnings: list[str] = []
    shown: dict[str, object] | None = None
    where = f"{landing.source_name}.{landing.table}"
    for item, report, landed in landing.partition.reads:
        cursor_to = item.cursor() if item.cursor is not None else None
        shown = {
            "returned": report.returned,
            "dropped": report.dropped,
            "landed": landed,
            "cursor_from": state.cursor,
            "cursor_to": cursor_to,
        }
        if item.stall is None:
            continue
        stalled = report.fresh > 0 and not report.moved
        history = record_read(
            landing.lake,
            landing.source_name,
            landing.table,
            Read(
                landing.run_id,
                now(),
                state.cursor,
                cursor_to,
                report.returned,
                report.fresh,
                report.dropped,
                landed,
                stalled,
            ),
        )
        count = stalled_runs(history)
        shown["stalled_runs"] = count
        if count < item.stall.runs:
            continue
        message = (
            f"{where}: cursor stalled: it has stayed at {state.cursor!r} for "
            f"{count} runs in a row while the source kept sending records ({report.returned} "
            f"this run, {report.dropped} dropped as landed already, {landed} landed). "
            f"{item.stall.hint}"
        ).strip()
        if item.stall.fail:
            raise CursorStalled(message)
        logger.warning(message)
        warnings.append(message)
    return warnings, shown


def _policy(source: Source, table: str) -> TablePolicy:
    """The table's contract settings (sources without any get the defaults)."""
    policy = getattr(source, "policy", None)
    return policy(table) if callable(policy) else TablePolicy()


def _keys_of(manifests: list[Manifest]) -> tuple[list[str], str | None] | None:
    """The primary key and cursor column the raw layer uses: the newest partition's."""
    return (manifests[-1].primary_key, manifests[-1].order_by) if manifests else None


def table_state(manifests: list[Manifest]) -> TableState:
    """The cursor of the newest partition that has one, and the records it landed at that
    cursor value: a partition's manifest is written after its data, so a cursor read here
    never runs ahead of the data landed."""
    with_cursor = [m for m in manifests if m.cursor is not None]
    if not with_cursor:
        return TableState()
    return TableState(cursor=with_cursor[-1].cursor, boundary=tuple(with_cursor[-1].boundary))
