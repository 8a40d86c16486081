"""A table's contract, checked before a file becomes part of a partition.

The contract is the raw schema the table has so far (folded from its manifests with the
lossless widening rules of ingest.schema), its declared types and its `on_schema_change`:

- `add_columns` (default): new columns are added (nullable), types widen losslessly; a column
  the file lacks, or a type with no lossless common type, rejects the file;
- `fail`: any difference (a new or missing column, a type the raw column would have to widen
  to) rejects the file;
- `allow`: like add_columns, and a column the file lacks lands as NULL.

A declared type wins: `types: {id: VARCHAR}` lets text arrive in a column that was numeric (the
raw column becomes text). A rejected file lands nothing, so there is never a partition that
every later load refuses; the reason names the file, the column, both types and the setting.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

from millpond.core.logs import logger
from millpond.ingest.lake import Manifest
from millpond.ingest.schema import SchemaMismatch, common_type, reconciled_columns

SchemaChange = Literal["add_columns", "fail", "allow"]
BadRows = Literal["fail", "quarantine"]


@dataclass(frozen=True)
class TablePolicy:
    """What a table accepts: schema changes, declared types, bad rows (files sources set it
    per table; other sources get the defaults)."""

    on_schema_change: SchemaChange = "add_columns"
    declared: dict[str, str] = field(default_factory=dict)
    on_bad_rows: BadRows = "fail"
    max_bad_rows: int | None = None
    max_bad_fraction: float | None = None
    # Where the settings live, for messages: "sources.erp.tables.orders".
    where: str = ""

    def too_many_bad_rows(self, bad: int, seen: int) -> bool:
        """Above the threshold (no threshold set: more than 1% of the rows)."""
        if self.max_bad_rows is not None and bad > self.max_bad_rows:
            return True
        fraction = self.max_bad_fraction
        if fraction is None and self.max_bad_rows is None:
            fraction = 0.01
        return fraction is not None and seen > 0 and bad / seen > fraction


class Rejected(Exception):
    """A file that breaks its table's contract; nothing of it lands."""

    retryable = False


class TypeConflict(Rejected):
    """A column whose values do not fit the table's raw type; landing adds where the first
    value that does not fit is (its line or row), which only the file can tell."""

    def __init__(self, message: str, column: str, raw: str, incoming: str) -> None:
        super().__init__(message)
        self.column, self.raw, self.incoming = column, raw, incoming


class TableConfigError(Exception):
    """A table's settings that do not match its data (a primary key or cursor column that
    is not there): the extract fails and nothing lands, since every later load of such a
    partition would fail too; fixing the setting is the way out, and then it works."""

    retryable = False


def check_keys(
    where: str, item: str, names: list[str], primary_key: Collection[str], order_by: str | None
) -> None:
    """Before anything is written: every primary key and cursor (`order_by`) column is in the
    data, else TableConfigError naming the setting, the missing column and the columns there
    are. A partition is only ever landed with keys its own rows have."""
    if not names:
        return  # nothing read (an empty REST page): nothing lands, there is nothing to check
    shown = ", ".join(names[:40]) + (f" (and {len(names) - 40} more)" if len(names) > 40 else "")
    missing = [k for k in primary_key if k not in names]
    if missing:
        raise TableConfigError(
            f"{item}: primary_key column {', '.join(repr(k) for k in missing)} is not in the "
            f"data (columns: {shown}); fix {where}.primary_key; nothing was landed"
        )
    if order_by is not None and order_by not in names:
        raise TableConfigError(
            f"{item}: cursor column {order_by!r} is not in the data (columns: {shown}); fix "
            f"{where}.incremental; nothing was landed"
        )


_SIMPLE = {
    "int8": "TINYINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "uint8": "UTINYINT",
    "uint16": "USMALLINT",
    "uint32": "UINTEGER",
    "uint64": "UBIGINT",
    "float": "FLOAT",
    "halffloat": "FLOAT",
    "double": "DOUBLE",
    "bool": "BOOLEAN",
    "string": "VARCHAR",
    "large_string": "VARCHAR",
    "string_view": "VARCHAR",
    "date32[day]": "DATE",
    "date64[ms]": "DATE",
    "null": "VARCHAR",
}
_DECIMAL = re.compile(r"decimal(?:32|64|128|256)\((\d+), (\d+)\)")


def duck_type(arrow: str) -> str:
    """The DuckDB type name of an Arrow type as manifests write it (str(pa.DataType))."""
    if arrow in _SIMPLE:
        return _SIMPLE[arrow]
    if arrow.startswith("timestamp["):
        return "TIMESTAMP WITH TIME ZONE" if "tz=" in arrow else "TIMESTAMP"
    match = _DECIMAL.fullmatch(arrow)
    if match:
        return f"DECIMAL({match.group(1)},{match.group(2)})"
    # Nested types compare by shape: Parquet names a list's items `element`, Arrow `item`.
    return re.sub(r"(?:large_)?list<[^:<>]+: ", "list<", arrow).upper()


def columns_of(schema: pa.Schema) -> dict[str, str]:
    return {f.name: duck_type(str(f.type)) for f in schema}


def contract_columns(manifests: list[Manifest]) -> dict[str, str]:
    """The table's raw columns so far, as the loaders reconcile them: partitions in landing
    order, empty ones bringing no types, a whole snapshot starting afresh. A partition that
    does not reconcile (landed by an older millpond) is left out, so it cannot block the rest."""
    columns: dict[str, str] = {}
    typed = False
    for manifest in manifests:
        incoming = {c["name"]: duck_type(c["type"]) for c in manifest.schema}
        if manifest.rows == 0 and columns:
            continue
        known = columns if typed and not manifest.replaces else {}
        try:
            columns, _ = reconciled_columns(known, incoming, manifest.declared_types)
        except SchemaMismatch as exc:
            logger.warning(f"{manifest.partition_id} does not join the table's columns: {exc}")
            continue
        typed = typed or manifest.rows > 0
    return columns


def missing_columns(contract: dict[str, str], incoming: dict[str, str]) -> list[str]:
    return [c for c in contract if c not in incoming]


def check_names(
    file: str, contract: dict[str, str], incoming: dict[str, str], policy: TablePolicy
) -> dict[str, str]:
    """Before anything is written: the columns to add as NULL (allow), or Rejected."""
    if not contract:
        return {}
    missing = missing_columns(contract, incoming)
    added = [c for c in incoming if c not in contract]
    where = policy.where or "the table"
    if policy.on_schema_change == "fail" and (missing or added):
        what = "; ".join(
            part
            for part in (
                f"new columns {', '.join(added)}" if added else "",
                f"missing columns {', '.join(missing)}" if missing else "",
            )
            if part
        )
        raise Rejected(
            f"{file}: {what} (on_schema_change: fail in {where}; set add_columns or allow)"
        )
    if missing and policy.on_schema_change != "allow":
        raise Rejected(
            f"{file}: columns missing from the file: {', '.join(missing)} (the table has them; "
            f"set on_schema_change: allow in {where} to land them as NULL)"
        )
    return {c: contract[c] for c in missing}


def type_conflict(
    where_in_file: str, column: str, raw: str, kind: str, policy: TablePolicy, value: str = ""
) -> str:
    """Why a column cannot join its raw column, and the fixes that keep the raw type (the
    raw column stays typed: declaring it text would turn it into text for good)."""
    found = f" ({value} is not a {raw})" if value else ""
    if not policy.where:  # a database or API table: the data is fixed at the source
        return (
            f"{where_in_file}: column {column} is {kind} in this read{found}, the table has "
            f"{raw}; fix the data at the source (the raw column stays {raw})"
        )
    if kind == "VARCHAR":
        return (
            f"{where_in_file}: column {column} is {kind} in this file{found}, the table has "
            f"{raw}; fix the export, or keep such rows aside with "
            f"types: {{{column}: {raw}}} and on_bad_rows: quarantine in {policy.where} "
            f"(declaring it VARCHAR would turn the raw column into text for good)"
        )
    return (
        f"{where_in_file}: column {column} is {kind} in this file, the table has {raw}; fix the "
        f"export, or declare types: {{{column}: {raw}}} in {policy.where} so it is read as the "
        f"table has it"
    )


def check_types(
    file: str,
    contract: dict[str, str],
    incoming: dict[str, str],
    policy: TablePolicy,
    declared: Collection[str] = (),
) -> dict[str, str]:
    """After the file is read (types of an empty file say nothing): the table's columns once
    the file joins, or Rejected naming the column, both types and the setting."""
    if not contract:
        return dict(incoming)
    where = policy.where or "the table"
    joined = dict(contract)
    for column, kind in incoming.items():
        raw = contract.get(column)
        if raw is None:
            joined[column] = kind
            continue
        wider = common_type(raw, kind)
        if wider is None and column in declared and kind == "VARCHAR":
            wider = "VARCHAR"  # declared text takes anything the column held
        if wider is None:
            raise TypeConflict(type_conflict(file, column, raw, kind, policy), column, raw, kind)
        if policy.on_schema_change == "fail" and wider != raw:
            raise Rejected(
                f"{file}: column {column} would change from {raw} to {wider} "
                f"(on_schema_change: fail in {where})"
            )
        joined[column] = wider
    return joined
