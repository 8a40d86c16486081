"""Readers that turn one export file into Arrow record batches, strictly.

Strict on purpose: DuckDB's CSV sniffer, left alone, reads a file with one over-long row as a
single text column, which is a silent corruption. Here the dialect comes from the header line
(or the config), types come from the sniffer run with that dialect in strict mode, and the read
itself is strict, so a bad row fails the file with its line number instead of being guessed
around. Errors are `SourceFileError`s that name the file and the line.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
from pydantic import Field

from millpond.core.config import StrictModel

BATCH_ROWS = 122_880
DELIMITERS = [",", ";", "|", "\t"]
_LINE = re.compile(r"CSV Error on Line: (\d+)")


class CsvOptions(StrictModel):
    """Overrides for DuckDB's CSV sniffer; unset values are detected."""

    delimiter: str | None = None
    header: bool | None = None
    quote: str | None = None
    encoding: Literal["utf-8", "utf-16", "latin-1"] | None = None
    # Declared column types win over the sniffer's guess, e.g. {customer_code: VARCHAR}.
    types: dict[str, str] = Field(default_factory=dict)
    # Rows the sniffer samples to guess types; -1 reads the whole file first (slower, surer).
    sample_size: int = Field(20_480, ge=-1)


class SourceFileError(Exception):
    """A source file that cannot be read; says which file, where, and why."""

    retryable = False

    def __init__(self, file: str, reason: str, line: int | None = None) -> None:
        self.file, self.reason, self.line = file, reason, line
        where = f"{file}, line {line}" if line is not None else file
        super().__init__(f"{where}: {reason}")


Batches = tuple[pa.Schema, Iterator[pa.RecordBatch]]


def read_batches(path: Path, fmt: str, options: CsvOptions) -> Batches:
    """The schema and record batches of one file, by format ('csv' or 'xlsx').

    The schema comes first so a header-only export still lands as an empty, typed partition.
    """
    if fmt == "csv":
        return read_csv(path, options)
    if fmt == "xlsx":
        return read_xlsx(path)
    raise SourceFileError(str(path), f"unsupported format {fmt!r}")


def _header_dialect(path: Path, options: CsvOptions) -> tuple[str, list[str]]:
    """The delimiter and column names, from the config or the file's first line."""
    encoding = options.encoding or "utf-8-sig"
    try:
        with path.open("r", encoding=encoding, newline="") as fh:
            first = fh.readline()
    except UnicodeDecodeError as exc:
        raise SourceFileError(
            str(path),
            f"not {encoding} text ({exc.reason}); set csv.encoding",
            exc.object[: exc.start].count(b"\n") + 1,  # the line of the first bad byte
        ) from None
    if not first.strip():
        raise SourceFileError(str(path), "empty file (no header line)", 1)
    delimiter = options.delimiter or max(DELIMITERS, key=first.count)
    names = next(
        csv.reader(io.StringIO(first), delimiter=delimiter, quotechar=options.quote or '"')
    )
    if options.header is False:
        names = [f"column{i}" for i in range(len(names))]
    elif len(set(names)) != len(names) or any(not n.strip() for n in names):
        raise SourceFileError(str(path), f"header has empty or duplicate column names: {names}", 1)
    return delimiter, names


def _csv_args(delimiter: str, options: CsvOptions) -> dict[str, Any]:
    args: dict[str, Any] = {
        "delim": delimiter,
        "quote": options.quote or '"',
        "escape": options.quote or '"',
        "header": options.header is not False,
        "strict_mode": True,
    }
    if options.encoding:
        args["encoding"] = options.encoding
    return args


def _sql_args(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}=${k}" for k in args)


def _strict_csv_query(
    con: duckdb.DuckDBPyConnection, path: Path, options: CsvOptions
) -> tuple[str, dict[str, Any]]:
    """The strict `read_csv` query for a file and its parameters: dialect from the header line,
    types from the sniffer run in strict mode, then auto-detection off."""
    delimiter, names = _header_dialect(path, options)
    unknown = sorted(set(options.types) - set(names))
    if unknown:
        raise SourceFileError(str(path), f"csv.types names columns not in the header: {unknown}", 1)
    args = _csv_args(delimiter, options)
    sniff = {**args, "sample_size": options.sample_size}
    try:
        query = (
            f"select Columns, DateFormat, TimestampFormat from sniff_csv($path, {_sql_args(sniff)})"
        )
        sniffed = con.execute(query, {"path": str(path), **sniff}).fetchone()
        assert sniffed is not None
        columns = {c["name"]: c["type"] for c in sniffed[0]}
        if list(columns) != names:
            raise ValueError("sniffed columns differ from the header")
        columns |= options.types
        formats = {"dateformat": sniffed[1], "timestampformat": sniffed[2]}
        args |= {k: v for k, v in formats.items() if v}
    except (duckdb.Error, ValueError):
        # The sniffer gives up on malformed files without saying where; a plain-text strict
        # read of the same file then fails on the exact line, which is what the user needs.
        columns = dict.fromkeys(names, "VARCHAR")
    args |= {"auto_detect": False, "columns": columns}
    return f"select * from read_csv($path, {_sql_args(args)})", {"path": str(path), **args}


def read_csv(path: Path, options: CsvOptions) -> Batches:
    """Stream a CSV file strictly as Arrow batches."""
    con = duckdb.connect()
    try:
        query, params = _strict_csv_query(con, path, options)
        reader = con.execute(query, params).to_arrow_reader(BATCH_ROWS)
    except duckdb.Error as exc:
        con.close()
        raise _csv_error(path, exc) from None
    except BaseException:
        con.close()
        raise

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from reader
        except (duckdb.Error, OSError, pa.ArrowException) as exc:
            raise _csv_error(path, exc) from None
        finally:
            con.close()

    return reader.schema, batches()


def _csv_error(path: Path, exc: Exception) -> SourceFileError:
    """DuckDB's message without its boilerplate: the reason, then the offending line."""
    message = str(exc)
    match = _LINE.search(message)
    details: list[str] = []
    for raw in message.splitlines():
        line = re.sub(r"^[\w ]*Error: ", "", raw.strip())
        if line.startswith(("Possible fixes", "Possible solutions", "file =")):
            break  # the rest is DuckDB's advice and a dump of the reader's settings
        if line and not line.startswith(("*", "Column ", "This type")):
            details.append(line)
    reason = "; ".join(d for d in details if not d.startswith(("CSV Error on Line", "Original")))
    original = next((d for d in details if d.startswith("Original Line")), None)
    if original:
        reason += f" ({original[:200]})"
    return SourceFileError(str(path), reason or message, int(match.group(1)) if match else None)


def read_xlsx(path: Path, sheet: int | str = 0) -> Batches:
    """The first (or named) sheet of a workbook; first row is the header."""
    from python_calamine import CalamineWorkbook

    try:
        workbook = CalamineWorkbook.from_path(str(path))
        sheet_obj = (
            workbook.get_sheet_by_name(sheet)
            if isinstance(sheet, str)
            else workbook.get_sheet_by_index(sheet)
        )
        rows = sheet_obj.to_python(skip_empty_area=True)
    except Exception as exc:
        raise SourceFileError(str(path), f"cannot read workbook: {exc}") from None
    if not rows:
        raise SourceFileError(str(path), "sheet is empty (no header row)", 1)
    header = [str(h).strip() for h in rows[0]]
    header = header[: max((i + 1 for i, h in enumerate(header) if h), default=1)]  # trailing ""
    if len(set(header)) != len(header) or any(not h for h in header):
        raise SourceFileError(str(path), f"header has empty or duplicate column names: {header}", 1)
    data = rows[1:]
    for index, row in enumerate(data, start=2):
        if len(row) > len(header) and any(v not in ("", None) for v in row[len(header) :]):
            raise SourceFileError(
                str(path), f"row has values beyond the {len(header)} header columns", index
            )
    arrays = [
        _xlsx_column([row[i] if i < len(row) else None for row in data]) for i in range(len(header))
    ]
    table = pa.table(arrays, names=header)
    return table.schema, iter(table.to_batches(BATCH_ROWS))


def _xlsx_column(values: list[Any]) -> pa.Array:
    """One typed column: whole numbers as int64, dates as date32, anything mixed as text."""
    present = [v for v in values if v not in ("", None)]
    cleaned = [None if v in ("", None) else v for v in values]
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        if all(float(v).is_integer() for v in present):
            return pa.array([None if v is None else int(v) for v in cleaned], pa.int64())
        return pa.array([None if v is None else float(v) for v in cleaned], pa.float64())
    if present and all(isinstance(v, dt.datetime) for v in present):
        return pa.array(cleaned, pa.timestamp("us"))
    if present and all(isinstance(v, dt.date) and not isinstance(v, dt.datetime) for v in present):
        return pa.array(cleaned, pa.date32())
    whole = [int(v) if isinstance(v, float) and v.is_integer() else v for v in cleaned]  # 7.0 -> 7
    return pa.array([None if v is None else str(v) for v in whole], pa.string())
