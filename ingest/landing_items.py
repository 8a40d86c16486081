"""Landing one table's new items: each checked against the table's contract and written as one
part under its staged (hidden) name, or rejected by name, or deferred to the next run.

ingest.landing decides what is new and writes the manifest; this module lands the items in
between, carrying a `TableLanding` (ingest.landing_state) from one to the next. An incremental
read is recorded under its report's identity (what it returned): one that returned what a
partition already holds is not landed again.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from millpond.core.logs import logger
from millpond.core.registry import SourceItem
from millpond.ingest.contract import (
    Rejected,
    TypeConflict,
    check_keys,
    check_names,
    check_types,
    columns_of,
    type_conflict,
)
from millpond.ingest.formats import BadRow, FileRead, SourceFileError
from millpond.ingest.formats.errors import clip
from millpond.ingest.lake import Lake, PartFile, SourceFile
from millpond.ingest.landing_state import LandedRead, TableLanding
from millpond.ingest.parts import write_part
from millpond.ingest.quarantine import quarantine_path, write_quarantine
from millpond.ingest.rejections import Rejection
from millpond.ingest.schema import RESERVED_COLUMNS
from millpond.ingest.staging import staged_name
from millpond.ingest.storage_errors import raise_if_storage


@dataclass(frozen=True)
class _Landed:
    """One item's part, written: its rows, bad rows, columns and the contract after it."""

    rows: int
    bad: list[BadRow]
    columns: dict[str, str]
    contract: dict[str, str]
    target: str


def land_items(landing: TableLanding, new: list[SourceItem]) -> object:
    """Land each new item as one part under its staged (hidden) name; returns the cursor
    (the last landed item's, None when no item has one)."""
    cursor = None
    for item in new:
        part_name = landing.next_part_name()
        outcome = _written(landing, item, f"{landing.folder}/{staged_name(part_name)}")
        if outcome is None:
            continue
        if item.cursor is not None:
            cursor = item.cursor()
        _keep(landing, item, outcome, part_name)
    return cursor


def _written(landing: TableLanding, item: SourceItem, target: str) -> _Landed | None:
    """The item's part, written at `target`; None when the item was rejected or deferred
    (recorded in `landing`, and nothing of it left behind)."""
    table, lake = landing.table, landing.lake
    try:
        outcome = _land_item(landing, target, item)
    except (SourceFileError, Rejected, OSError) as exc:
        _discard(lake, target)
        raise_if_storage(exc, lake.uri(target), item.name)
        if isinstance(exc, OSError):
            raise
        reason = _reason(item.name, exc)
        landing.rejected.append(Rejection(item.name, item.fingerprint, reason))
        logger.warning(f"{table}: rejected {reason}")
        return None
    if outcome is None:
        landing.deferred.append(item.name)
        logger.info(
            f"{table}: {item.name} has other columns than this run's other new files; "
            "it lands in the next run (a partition holds files of one schema)"
        )
    return outcome


def _keep(landing: TableLanding, item: SourceItem, outcome: _Landed, part_name: str) -> None:
    """Add a written part to the partition, unless it returned what is landed already or
    nothing (then it is removed), with its bad rows kept aside in the quarantine."""
    lake, table, partition, target = landing.lake, landing.table, landing.partition, outcome.target
    rows, bad = outcome.rows, outcome.bad
    fingerprint = item.fingerprint
    report = item.report() if item.report is not None else None
    if report is not None:
        fingerprint = report.identity
        if rows and fingerprint in landing.known:
            lake.fs.delete_file(target)
            partition.reads.append(LandedRead(item, report, 0))
            logger.info(f"{table}: {item.name} returned what is landed already")
            return
        landing.known.add(fingerprint)
        partition.reads.append(LandedRead(item, report, rows))
    keys = (list(item.primary_key), item.order_by)
    # The table's primary key or cursor column changed in the config and nothing is new:
    # an empty partition (when the read wrote one) carries the new keys, so the raw layer
    # uses the config as it is now instead of the newest manifest's frozen copy.
    rekeyed = partition.keys is not None and keys != partition.keys and lake.exists(target)
    if rows == 0 and not item.land_if_empty and not rekeyed:
        _discard(lake, target)
        logger.info(f"{table}: nothing new from {item.name}")
        return
    if rows == 0 and not item.land_if_empty:
        logger.info(f"{table}: primary_key or cursor changed; the raw layer follows")
    if report is not None:
        partition.boundary = list(report.boundary)
    partition.contract, partition.columns = outcome.contract, outcome.columns
    partition.schema = pq.read_schema(target, filesystem=lake.fs)
    if bad:
        relative = quarantine_path(
            landing.source_name, table, landing.ingest_date, landing.run_id, part_name
        )
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


def _land_item(landing: TableLanding, target: str, item: SourceItem) -> _Landed | None:
    """Check one item against the contract, write its part, check its types once its rows
    are known; the rows written and the bad rows kept aside, None when it must wait for the
    next run, Rejected (or SourceFileError) when it cannot join its table, TableConfigError
    (the extract fails) when the table's keys are not in the data."""
    partition, policy = landing.partition, landing.policy
    file = _opened(item)
    if not file.schema.names and not item.land_if_empty:
        # An incremental read that found nothing has no columns either: nothing to check
        # against the table's (its columns are not missing, there are no rows).
        file.close()
        return _Landed(0, [], {}, partition.contract, target)
    try:
        check_keys(landing.settings, item.name, file.schema.names, item.primary_key, item.order_by)
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
        rows = write_part(landing.lake, target, file, fill)
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
            raise _located(landing, target, item.name, file, conflict) from None
    return _Landed(rows, bad, columns, joined if rows > 0 else partition.contract, target)


def _located(
    landing: TableLanding, target: str, name: str, file: FileRead, conflict: TypeConflict
) -> TypeConflict:
    """The conflict again, naming the first value that does not fit the raw type and its line
    (the file's reader knows lines) or row (found in the part just written)."""
    column, raw = conflict.column, conflict.raw
    if conflict.incoming != "VARCHAR":
        return conflict  # a whole column of another kind: no single value to point at
    found = file.locate(column, raw) if file.locate is not None else None
    if found is None:
        found = _first_unfit(landing.lake, target, column, raw)
    if found is None:
        return conflict
    where, value = found
    message = type_conflict(
        f"{name}, {where}", column, raw, conflict.incoming, landing.policy, value
    )
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
