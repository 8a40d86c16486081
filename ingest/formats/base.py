"""What every reader gives landing: a file's schema before its rows, then its rows once.

The schema comes first so landing can check the file against its table's contract before
anything is written; then either `batches()` streams Arrow batches (any format) or `copy_to`
lets DuckDB write the Parquet part itself (delimited text: DuckDB's parallel reader and writer,
several times faster than streaming its batches through pyarrow).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from millpond.ingest.formats.errors import SourceFileError

BATCH_ROWS = 122_880


@dataclass(frozen=True)
class BadRow:
    """A row kept out of a file's part: where it was, why, and what it said (clipped)."""

    line: int | None
    reason: str
    text: str


@dataclass
class FileRead:
    """One file, opened: its schema, its rows, and (after they are read) its bad rows."""

    name: str
    schema: pa.Schema
    batches: Callable[[], Iterator[pa.RecordBatch]]
    # (destination, extra SELECT expressions, threads) -> rows; None: stream `batches()`.
    copy_to: Callable[[str, list[str], int], int] | None = None
    bad_rows: list[BadRow] = field(default_factory=list)
    close: Callable[[], None] = lambda: None
    # Rows read, good and bad (for a bad-row fraction).
    rows_seen: int = 0
    # (column, type) -> where the first value that does not cast to the type is ("line 7")
    # and that value; None when the reader cannot tell (landing then names the row).
    locate: Callable[[str, str], tuple[str, str] | None] | None = None


def arrow_read(name: str, table: pa.Table) -> FileRead:
    """A FileRead over rows already in memory (workbooks, JSON, small files)."""
    return FileRead(name, table.schema, lambda: iter(table.to_batches(BATCH_ROWS)))


def with_declared_types(path: str, table: pa.Table, types: dict[str, str]) -> pa.Table:
    """The table with declared columns cast by DuckDB (same type names as for CSV); a value
    that does not fit names the column and the type."""
    if not types:
        return table
    unknown = sorted(set(types) - set(table.column_names))
    if unknown:
        raise SourceFileError(
            path,
            f"types names columns not in the file: {unknown} (the file has "
            f"{', '.join(table.column_names)}); fix the table's types",
        )
    con = duckdb.connect()
    try:
        con.register("src", table)
        exprs = []
        for column in table.column_names:
            q = '"' + column.replace('"', '""') + '"'
            exprs.append(f"cast({q} as {types[column]}) as {q}" if column in types else q)
        try:
            return con.execute(f"select {', '.join(exprs)} from src").fetch_arrow_table()
        except duckdb.Error as exc:
            raise SourceFileError(path, f"declared types do not fit: {exc}") from None
    finally:
        con.close()
