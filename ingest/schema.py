"""Reconcile a raw table's columns with a partition about to be loaded into it, losslessly.

Each export file's types are inferred on their own, so the same column can arrive as BIGINT in
one file and DOUBLE in the next. Inserting the wider values into the narrower raw column would
silently round them (12.75 -> 13), so the raw column is widened instead (each target applies
the result in its load's transaction): integers to wider integers or DOUBLE, DATE to TIMESTAMP;
an existing VARCHAR column takes anything. Types with no lossless common type (DATE vs BIGINT,
text arriving in a numeric column) fail the load with both types named. New columns are added
as nullable; a column missing from the partition fails the load.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from millpond.ingest.lake import Manifest

NUMERIC_RANK = {"TINYINT": 1, "SMALLINT": 2, "INTEGER": 3, "BIGINT": 4, "HUGEINT": 5}
FLOAT_RANK = {"FLOAT": 6, "DOUBLE": 7}
TEMPORAL_RANK = {"DATE": 1, "TIMESTAMP": 2, "TIMESTAMP WITH TIME ZONE": 3}
BOOKKEEPING = {"_partition_id", "_loaded_at"}
# Names no source column may have: the bookkeeping columns, and the file column raw views use.
RESERVED_COLUMNS = BOOKKEEPING | {"_millpond_file"}


class SchemaMismatch(Exception):
    """A partition whose columns cannot be loaded into the raw table without losing data."""


def common_type(raw: str, incoming: str) -> str | None:
    """The narrowest type holding both without loss, or None if there is none."""
    if raw == incoming or raw == "VARCHAR":
        return raw
    if incoming == "VARCHAR":
        # Text where the raw table has numbers or dates is a data problem to report (or to
        # declare with csv.types), not a reason to turn the whole column into text.
        return None
    numeric = NUMERIC_RANK | FLOAT_RANK
    raw_n = numeric.get(raw, 6.5 if raw.startswith("DECIMAL") else None)
    new_n = numeric.get(incoming, 6.5 if incoming.startswith("DECIMAL") else None)
    if raw_n is not None and new_n is not None:
        if raw.startswith("DECIMAL") or incoming.startswith("DECIMAL"):
            return "DOUBLE" if max(raw_n, new_n) == 7 else (raw if raw_n >= new_n else incoming)
        return raw if raw_n >= new_n else incoming
    if raw in TEMPORAL_RANK and incoming in TEMPORAL_RANK:
        return raw if TEMPORAL_RANK[raw] >= TEMPORAL_RANK[incoming] else incoming
    return None


def reconciled_columns(
    raw: dict[str, str], incoming: dict[str, str], declared: Collection[str] = ()
) -> tuple[dict[str, str], list[str]]:
    """The raw relation's columns (name -> DuckDB type) once `incoming` joins it, and what
    changed. An empty `raw` is a new relation. Raises SchemaMismatch for a column missing from
    the partition or a type with no lossless common type. A column the partition declared as
    text (`types: {id: VARCHAR}`) turns the raw column into text: every value casts to it."""
    if not raw:
        return dict(incoming), []
    missing = [c for c in raw if c not in incoming and c not in BOOKKEEPING]
    if missing:
        raise SchemaMismatch(f"columns missing from this partition: {', '.join(missing)}")
    columns = dict(raw)
    changes: list[str] = []
    for column, kind in incoming.items():
        if column not in raw:
            columns[column] = kind
            changes.append(f"added column {column} {kind}")
            continue
        wider = common_type(raw[column], kind)
        if wider is None and column in declared and kind == "VARCHAR":
            wider = "VARCHAR"
        if wider is None:
            raise SchemaMismatch(
                f"column {column}: the raw table has {raw[column]}, this partition has {kind}"
            )
        if wider != raw[column]:
            columns[column] = wider
            changes.append(f"widened column {column} from {raw[column]} to {wider}")
    return columns, changes


def missing_keys(manifest: Manifest, columns: Collection[str]) -> list[str]:
    """The partition's primary key and cursor columns that the raw relation does not have:
    only a partition landed before landing checked its keys (ingest.contract.check_keys)
    can have any."""
    keys = [*manifest.primary_key, *([manifest.order_by] if manifest.order_by else [])]
    return [k for k in keys if k not in columns]


def stale_keys(manifest: Manifest, missing: list[str], columns: Collection[str]) -> str:
    """Why the raw layer cannot use the partition's keys, and the fix (no `lake drop`
    needed: the next extract after the fix lands the keys as configured)."""
    shown = ", ".join(c for c in columns if c not in BOOKKEEPING)
    return (
        f"{manifest.partition_id}: its primary key / cursor column {', '.join(missing)} is not "
        f"a column of raw {manifest.source}.{manifest.table} (columns: {shown}); fix "
        f"sources.{manifest.source}.tables.{manifest.table}.primary_key (or .incremental) and "
        "run again: the next extract carries the fixed keys and the load follows them"
    )
