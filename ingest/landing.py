"""Extract: land what a source offers for one table as one immutable raw partition.

Every item a source offers carries a fingerprint (a file's sha256): one already in some
partition of the table is skipped, so re-running a run, or a day with nothing new, lands
nothing. An incremental read (a query, an API) is asked on every run and known by what it
returned (`SourceItem.report`): a read identical to a landed one is not landed again, and a
cursor that stays put while its source keeps sending records is a warning (or an error) that
names the table, counted across runs in the lake (ingest.reads). Parts are written first,
under hidden names (ingest.staging), renamed once all are complete, and the manifest last; a
retry of the same run finds either a complete partition (and returns it) or leftovers without a
manifest (and removes them first). Before
anything is written, the table's primary key and cursor column are checked against the data
(ingest.contract.check_keys): a partition never carries keys its rows do not have.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import time
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.contract import (
    Rejected,
    TablePolicy,
    TypeConflict,
    check_keys,
    check_names,
    check_types,
    columns_of,
    contract_columns,
    type_conflict,
)
from ingest.formats import BadRow, FileRead, SourceFileError
from ingest.formats.errors import clip
from ingest.lake import MANIFEST, Lake, Manifest, PartFile, SourceFile
from ingest.parts import write_part
from ingest.quarantine import quarantine_path, write_quarantine
from ingest.reads import Read, now, record_read, stalled_runs
from ingest.rejections import Rejection
from ingest.schema import RESERVED_COLUMNS
from ingest.staging import discard, publish_parts, staged_name
from millpond.core.logs import logger
from millpond.core.registry import ReadReport, Source, SourceItem, TableState


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


@dataclass
class _Partition:
    """The parts written so far by one landing, and the table's columns once they join."""

    contract: dict[str, str]
    columns: dict[str, str] | None = None
    schema: pa.Schema | None = None
    parts: list[PartFile] = field(default_factory=list)
    files: list[SourceFile] = field(default_factory=list)
    quarantine: list[str] = field(default_factory=list)
    # The incremental reads of this landing: the item, its report and the rows it landed.
    reads: list[tuple[SourceItem, ReadReport, int]] = field(default_factory=list)
    boundary: list[str] = field(default_factory=list)
    # The newest partition's primary key and cursor column, as the raw layer uses them (None
    # before the table's first partition).
    keys: tuple[list[str], str | None] | None = None


@dataclass(frozen=True)
class _Landed:
    """One item's part, written: its rows, bad rows, columns and the contract after it."""

    rows: int
    bad: list[BadRow]
    columns: dict[str, str]
    contract: dict[str, str]
    target: str


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
    folder = lake.partition_dir(source_name, table, ingest_date, run_id)
    existing = lake.manifests(source_name, table)
    mine = [m for m in existing if m.run_id == run_id]
    if mine:  # a retry of this run's node: the partition is already complete
        return LandingResult(mine[0], [])
    known = {f.sha256 for m in existing for f in m.files}
    new: list[SourceItem] = []
    skipped: list[str] = []
    state = table_state(existing)
    for item in source.items(table, state):
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
    policy = _policy(source, table)
    lake.fs.create_dir(folder, recursive=True)
    partition = _Partition(contract_columns(existing), keys=_keys_of(existing))
    rejected: list[Rejection] = []
    deferred: list[str] = []
    try:
        cursor = _land_items(
            lake,
            folder,
            source_name,
            table,
            run_id,
            ingest_date,
            new,
            policy,
            partition,
            rejected,
            deferred,
            known,
        )
        warnings, read = _check_stall(lake, source_name, table, run_id, state, partition)
    except BaseException:
        discard(lake, folder)  # a failed landing leaves nothing, not even a hidden part
        raise
    seconds = time.monotonic() - started
    if partition.schema is None:  # nothing landed: every item rejected, deferred or empty
        lake.fs.delete_dir(folder)
        return LandingResult(None, skipped, rejected, deferred, seconds, warnings, read)
    parts = partition.parts
    manifest = Manifest(
        partition_id=lake.partition_id(source_name, table, ingest_date, run_id),
        source=source_name,
        table=table,
        run_id=run_id,
        ingest_date=ingest_date,
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
        declared_types=dict(policy.declared),
        quarantine=partition.quarantine,
        boundary=partition.boundary,
    )
    try:
        publish_parts(lake, folder, [p.name for p in parts])
        lake.write_text_atomic(f"{folder}/{MANIFEST}", manifest.to_json())
    except BaseException:
        discard(lake, folder)
        raise
    if manifest.rows and seconds > 0:
        logger.info(f"{table}: {manifest.rows:,} rows in {seconds:.1f} s")
    return LandingResult(manifest, skipped, rejected, deferred, seconds, warnings, read)


def _check_stall(
    lake: Lake,
    source_name: str,
    table: str,
    run_id: str,
    state: TableState,
    partition: _Partition,
) -> tuple[list[str], dict[str, object] | None]:
    """Record each incremental read with a stall check (ingest.reads) and say when the
    cursor has not moved for `stall.runs` runs in a row while the source kept sending
    records: a warning, or CursorStalled (nothing lands) when the source's settings say so."""
    warnings: list[str] = []
    shown: dict[str, object] | None = None
    for item, report, landed in partition.reads:
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
            lake,
            source_name,
            table,
            Read(
                run_id,
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
            f"{source_name}.{table}: cursor stalled: it has stayed at {state.cursor!r} for "
            f"{count} runs in a row while the source kept sending records ({report.returned} "
            f"this run, {report.dropped} dropped as landed already, {landed} landed). "
            f"{item.stall.hint}"
        ).strip()
        if item.stall.fail:
            raise CursorStalled(message)
        logger.warning(message)
        warnings.append(message)
    return warnings, shown


def _land_items(  # noqa: PLR0913 (issue 24 gives it a landing-state object)
    lake: Lake,
    folder: str,
    source_name: str,
    table: str,
    run_id: str,
    ingest_date: str,
    new: list[SourceItem],
    policy: TablePolicy,
    partition: _Partition,
    rejected: list[Rejection],
    deferred: list[str],
    known: set[str],
) -> object:
    """Land each new item as one part under its staged (hidden) name; returns the cursor.

    An incremental read is recorded under its report's identity (what it returned): one that
    returned what a partition already holds is not landed again."""
    cursor = None
    for item in new:
        part_name = f"part-{len(partition.parts):05d}.parquet"
        target = f"{folder}/{staged_name(part_name)}"
        try:
            outcome = _land_item(
                lake, target, item, partition, policy, _settings(source_name, table)
            )
        except (SourceFileError, Rejected, OSError) as exc:
            _discard(lake, target)
            _raise_if_storage(exc, lake.uri(target), item.name)
            if isinstance(exc, OSError):
                raise
            reason = _reason(item.name, exc)
            rejected.append(Rejection(item.name, item.fingerprint, reason))
            logger.warning(f"{table}: rejected {reason}")
            continue
        if outcome is None:
            deferred.append(item.name)
            logger.info(
                f"{table}: {item.name} has other columns than this run's other new files; "
                "it lands in the next run (a partition holds files of one schema)"
            )
            continue
        rows, bad = outcome.rows, outcome.bad
        if item.cursor is not None:
            cursor = item.cursor()
        fingerprint = item.fingerprint
        report = item.report() if item.report is not None else None
        if report is not None:
            fingerprint = report.identity
            if rows and fingerprint in known:
                lake.fs.delete_file(target)
                partition.reads.append((item, report, 0))
                logger.info(f"{table}: {item.name} returned what is landed already")
                continue
            known.add(fingerprint)
            partition.reads.append((item, report, rows))
        keys = (list(item.primary_key), item.order_by)
        # The table's primary key or cursor column changed in the config and nothing is new:
        # an empty partition (when the read wrote one) carries the new keys, so the raw layer
        # uses the config as it is now instead of the newest manifest's frozen copy.
        rekeyed = partition.keys is not None and keys != partition.keys and lake.exists(target)
        if rows == 0 and not item.land_if_empty and not rekeyed:
            _discard(lake, target)
            logger.info(f"{table}: nothing new from {item.name}")
            continue
        if rows == 0 and not item.land_if_empty:
            logger.info(f"{table}: primary_key or cursor changed; the raw layer follows")
        if report is not None:
            partition.boundary = list(report.boundary)
        partition.contract, partition.columns = outcome.contract, outcome.columns
        partition.schema = pq.read_schema(target, filesystem=lake.fs)
        if bad:
            relative = quarantine_path(source_name, table, ingest_date, run_id, part_name)
            write_quarantine(lake, relative, item.name, bad)
            partition.quarantine.append(relative)
            logger.warning(
                f"{table}: {len(bad)} bad rows of {item.name} quarantined in {relative} "
                f"(first: line {bad[0].line}: {bad[0].reason})"
            )
        size = lake.fs.get_file_info(target).size or 0
        partition.parts.append(PartFile(part_name, rows, size))
        partition.files.append(SourceFile(item.name, fingerprint, item.size, rows, len(bad)))
        logger.info(f"{table}: landed {item.name} ({rows:,} rows)")
    return cursor


class StorageError(Exception):
    """The lake's storage failed while landing (disk full, read-only, I/O error): the file is
    not at fault and is not rejected; the node fails and may be retried once it is fixed."""

    retryable = True


_STORAGE = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EIO: "I/O error",
}
_STORAGE_TEXT = {
    "no space left on device": "disk full",
    "disk quota exceeded": "disk quota exceeded",
    "read-only file system": "read-only file system",
}


def _raise_if_storage(exc: BaseException, target: str, name: str) -> None:
    """Raise StorageError when `exc` (or what it was raised from: readers wrap DuckDB's and
    Arrow's errors) says the storage failed, not the file."""
    seen: BaseException | None = exc
    while seen is not None:
        code = seen.errno if isinstance(seen, OSError) else None
        what = _STORAGE.get(code or -1)
        text = str(seen).lower()
        what = what or next((w for t, w in _STORAGE_TEXT.items() if t in text), None)
        if what:
            raise StorageError(
                f"cannot write {target} while landing {name}: {what} ({seen}); the file is "
                "not rejected: free space (or fix the lake's storage) and run again"
            ) from exc
        seen = seen.__cause__ or seen.__context__
    return None


def _policy(source: Source, table: str) -> TablePolicy:
    """The table's contract settings (sources without any get the defaults)."""
    policy = getattr(source, "policy", None)
    return policy(table) if callable(policy) else TablePolicy()


def _settings(source_name: str, table: str) -> str:
    """Where a table's settings live in millpond.yml, for messages."""
    return f"sources.{source_name}.tables.{table}"


def _reason(name: str, exc: Exception) -> str:
    """The rejection's reason, naming the file by its name (paths are long in summaries)."""
    if isinstance(exc, SourceFileError):
        where = f"{name}, line {exc.line}" if exc.line is not None else name
        return f"{where}: {exc.reason}"
    return str(exc)


def _discard(lake: Lake, target: str) -> None:
    with contextlib.suppress(OSError):
        if lake.exists(target):
            lake.fs.delete_file(target)


def _opened(item: SourceItem) -> FileRead:
    if item.open is not None:
        opened: FileRead = item.open()
        return opened
    schema, batches = item.read()
    # Closing releases the read's connection even when the read is refused on its schema.
    close = getattr(batches, "close", None)
    return FileRead(item.name, schema, lambda: batches, close=close or (lambda: None))


def _land_item(
    lake: Lake,
    target: str,
    item: SourceItem,
    partition: _Partition,
    policy: TablePolicy,
    settings: str,
) -> _Landed | None:
    """Check one item against the contract, write its part, check its types once its rows
    are known; the rows written and the bad rows kept aside, None when it must wait for the
    next run, Rejected (or SourceFileError) when it cannot join its table, TableConfigError
    (the extract fails) when the table's keys are not in the data."""
    file = _opened(item)
    if not file.schema.names and not item.land_if_empty:
        # An incremental read that found nothing has no columns either: nothing to check
        # against the table's (its columns are not missing, there are no rows).
        file.close()
        return _Landed(0, [], {}, partition.contract, target)
    try:
        check_keys(settings, item.name, file.schema.names, item.primary_key, item.order_by)
        reserved = sorted(set(file.schema.names) & RESERVED_COLUMNS)
        if reserved:
            raise SourceFileError(
                item.name,
                f"column {', '.join(reserved)} is reserved for millpond's bookkeeping in raw "
                "relations; rename it in the export (or the query)",
            )
        incoming = columns_of(file.schema)
        fill = check_names(item.name, partition.contract, incoming, policy)
        columns = {**incoming, **fill}
        if partition.columns is not None and columns != partition.columns:
            return None
        rows = write_part(lake, target, file, fill)
    finally:
        file.close()
    bad = file.bad_rows
    if bad and policy.too_many_bad_rows(len(bad), file.rows_seen):
        first = bad[0]
        raise Rejected(
            f"{item.name}: {len(bad)} bad rows of {file.rows_seen} (line {first.line}: "
            f"{first.reason}), above the threshold (max_bad_rows / max_bad_fraction in "
            f"{policy.where or 'the table'})"
        )
    joined = partition.contract
    if rows > 0 or not partition.contract:
        try:
            joined = check_types(item.name, partition.contract, incoming, policy, policy.declared)
        except TypeConflict as conflict:
            raise _located(lake, target, item.name, file, conflict, policy) from None
    return _Landed(rows, bad, columns, joined if rows > 0 else partition.contract, target)


def _located(
    lake: Lake,
    target: str,
    name: str,
    file: FileRead,
    conflict: TypeConflict,
    policy: TablePolicy,
) -> TypeConflict:
    """The conflict again, naming the first value that does not fit the raw type and its line
    (the file's reader knows lines) or row (found in the part just written)."""
    column, raw = conflict.column, conflict.raw
    if conflict.incoming != "VARCHAR":
        return conflict  # a whole column of another kind: no single value to point at
    found = file.locate(column, raw) if file.locate is not None else None
    if found is None:
        found = _first_unfit(lake, target, column, raw)
    if found is None:
        return conflict
    where, value = found
    message = type_conflict(f"{name}, {where}", column, raw, conflict.incoming, policy, value)
    return TypeConflict(message, column, raw, conflict.incoming)


def _first_unfit(lake: Lake, target: str, column: str, raw: str) -> tuple[str, str] | None:
    """The row (from 1, in the item's order) of the first value of `column` in the written
    part that does not cast to `raw`, and that value."""
    try:
        values = pq.read_table(target, columns=[column], filesystem=lake.fs)
        with duckdb.connect() as con:
            con.register("part", values)
            q = '"' + column.replace('"', '""') + '"'
            row = con.execute(
                f"select n, v from (select row_number() over () as n, {q} as v from part) "
                f"where v is not null and try_cast(v as {raw}) is null order by n limit 1"
            ).fetchone()
    except (OSError, pa.ArrowException, duckdb.Error):
        return None
    return (f"row {row[0]}", repr(clip(str(row[1]), 60))) if row else None


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
