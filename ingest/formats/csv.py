"""Delimited text (CSV, TSV), read strictly by DuckDB.

Strict on purpose: DuckDB's CSV sniffer, left alone, reads a file with one over-long row as a
single text column, which is a silent corruption. Here the dialect comes from the header line
(or the config), types come from the sniffer run with that dialect in strict mode, and the read
itself is strict, so a bad row fails the file with its line number instead of being guessed
around (or, with quarantine, is kept aside with its line and reason). Dates whose day and month
could be swapped are refused unless a format is declared: `02/06/2024` silently became
2024-06-02 once. Settings that do not match the file are errors naming the column and the
setting, never garbage: a delimiter that finds one column where another finds several, a
decimal_comma, thousands or date format that turns a column of numbers or dates into text.
Files in other encodings than UTF-8 are transcoded to a temporary UTF-8 copy first (DuckDB
itself reads only UTF-8, UTF-16 and Latin-1).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from millpond.ingest.formats.base import BATCH_ROWS, BadRow, FileRead
from millpond.ingest.formats.errors import SourceFileError, clip
from millpond.ingest.formats.options import CsvOptions, ReadOptions

DELIMITERS = [",", ";", "|", "\t"]
_LINE = re.compile(r"CSV Error on Line: (\d+)")
_REASON = re.compile(
    r"(Maximum line size|Expected Number|Value with|Invalid|Too many|Could not|Error when)"
)
_UTF8 = {"utf-8", "utf-8-sig"}
_BOMS = {codecs.BOM_UTF16_LE: "utf-16", codecs.BOM_UTF16_BE: "utf-16"}
_counter = iter(range(1 << 62))
_counter_lock = threading.Lock()


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def encoding_of(path: Path, options: CsvOptions) -> str:
    """The configured encoding, else UTF-16 when the file starts with its byte-order mark."""
    if options.encoding:
        return options.encoding
    with path.open("rb") as fh:
        start = fh.read(2)
    return _BOMS.get(start, "utf-8")


def _transcoded(path: Path, encoding: str, folder: Path) -> Path:
    """A UTF-8 copy of a file in another encoding; a byte that is not in the encoding fails
    with its line."""
    target = folder / (path.stem + ".utf8.csv")
    lines = 1
    try:
        with (
            path.open("r", encoding=encoding, newline="") as src,
            target.open("w", encoding="utf-8", newline="") as out,
        ):
            for block in iter(lambda: src.read(1 << 20), ""):
                out.write(block)
                lines += block.count("\n")
    except UnicodeDecodeError as exc:
        line = lines + exc.object[: exc.start].count(b"\n")
        raise SourceFileError(
            str(path), f"not {encoding} text ({exc.reason}); set csv.encoding", line
        ) from None
    return target


def _header_dialect(
    path: Path, shown: str, options: CsvOptions, tab: bool
) -> tuple[str, list[str]]:
    """The delimiter and column names, from the config or the file's first line."""
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as fh:
            first = fh.readline(1 << 20)
    except UnicodeDecodeError as exc:
        raise SourceFileError(
            shown,
            f"not utf-8 text ({exc.reason}); set csv.encoding (e.g. cp1252)",
            exc.object[: exc.start].count(b"\n") + 1,  # the line of the first bad byte
        ) from None
    if not first.strip():
        raise SourceFileError(shown, "empty file (no header line)", 1)
    delimiter = options.delimiter or ("\t" if tab else max(DELIMITERS, key=first.count))
    quote = options.quote or '"'
    names = next(csv.reader(io.StringIO(first), delimiter=delimiter, quotechar=quote))
    if len(names) == 1 and options.delimiter:
        _one_column(shown, first, delimiter, quote)
    if options.header is False:
        names = [f"column{i}" for i in range(len(names))]
    elif len(set(names)) != len(names) or any(not n.strip() for n in names):
        raise SourceFileError(shown, f"header has empty or duplicate column names: {names}", 1)
    return delimiter, names


def _one_column(shown: str, first: str, delimiter: str, quote: str) -> None:
    """A configured delimiter that splits the header into one column while another one would
    split it into several is a wrong setting, not a one-column file."""
    for other in DELIMITERS:
        if other == delimiter:
            continue
        fields = next(csv.reader(io.StringIO(first), delimiter=other, quotechar=quote))
        if len(fields) > 1:
            raise SourceFileError(
                shown,
                f"delimiter {delimiter!r} found one column {clip(first.rstrip(), 80)!r} (the "
                f"header has {other!r}): set csv.delimiter: {other!r}",
                1,
            )


def _csv_args(delimiter: str, options: CsvOptions) -> dict[str, Any]:
    args: dict[str, Any] = {
        "delim": delimiter,
        "quote": options.quote or '"',
        "escape": options.quote or '"',
        "header": options.header is not False,
        "strict_mode": True,
    }
    if options.decimal_comma:
        args["decimal_separator"] = ","
    if options.thousands:
        args["thousands"] = options.thousands
    if options.max_line_size:
        args["max_line_size"] = options.max_line_size
        args["buffer_size"] = max(options.max_line_size * 2, 16 << 20)
    if options.date_format:
        args["dateformat"] = options.date_format
    if options.timestamp_format:
        args["timestampformat"] = options.timestamp_format
    return args


def _sql_args(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}=${k}" for k in args)


def _swapped(fmt: str) -> str | None:
    """The format with day and month swapped, when it has both as numbers and does not start
    with the year (year-month-day is ISO 8601, never year-day-month)."""
    year = fmt.find("%Y") if "%Y" in fmt else fmt.find("%y")
    if "%d" in fmt and "%m" in fmt and not 0 <= year < min(fmt.find("%d"), fmt.find("%m")):
        return fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")
    return None


def _ambiguous_dates(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    shown: str,
    base: dict[str, Any],
    names: list[str],
    columns: dict[str, str],
    formats: dict[str, str | None],
    sample: int,
) -> None:
    """Refuse DATE/TIMESTAMP columns whose sampled values parse just as well with day and
    month swapped: which one the export meant cannot be told from the file."""
    kinds = {"DATE": formats.get("dateformat"), "TIMESTAMP": formats.get("timestampformat")}
    text = {**base, "auto_detect": False, "columns": dict.fromkeys(names, "VARCHAR")}
    limit = f" limit {sample}" if sample > 0 else ""
    for column, kind in columns.items():
        fmt = kinds.get(kind)
        swapped = _swapped(fmt) if fmt else None
        if not swapped or swapped == fmt:
            continue
        q = _quote(column)
        rows = con.execute(
            f"select {q} from read_csv($path, {_sql_args(text)}) where {q} is not null{limit}",
            {"path": str(path), **text},
        ).fetchall()
        values = [r[0] for r in rows]
        both = con.execute(
            "select count(*) = 0 from (select unnest($v) as v) where try_strptime(v, $f) is null",
            {"v": values, "f": swapped},
        ).fetchone()
        if values and both and both[0]:
            setting = "date_format" if kind == "DATE" else "timestamp_format"
            raise SourceFileError(
                shown,
                f"column {column}: dates like {', '.join(values[:3])} read as {fmt} or "
                f"{swapped}; declare which with csv.{setting} (e.g. {setting}: '{fmt}')",
            )


# Settings that change how values parse: when one does not match the file, the sniffer reads
# the column as text (or another type), and the file would land garbage with rc 0.
_VALUE_SETTINGS = ("decimal_separator", "thousands", "dateformat", "timestampformat")
NUMERIC = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE"}
_NUMBER_LIKE = re.compile(r"[-+]?(?:\d{1,3}(?:[.,' ]\d{3})+|\d+)(?:[.,]\d+)?")
_DATE_LIKE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}")


def _settings_match(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    shown: str,
    args: dict[str, Any],
    names: list[str],
    columns: dict[str, str],
    options: CsvOptions,
    declared: dict[str, str],
) -> None:
    """Refuse a decimal, thousands or date setting that does not match the file: the same
    file sniffed without the setting has numbers or dates in a column that, with it, would
    land as text (or another type), or a text column's values look like numbers or dates.
    Declared columns are the user's word and are not second-guessed."""
    if not any(k in args for k in _VALUE_SETTINGS):
        return
    plain = {k: v for k, v in args.items() if k not in _VALUE_SETTINGS}
    plain["sample_size"] = options.sample_size
    sniffed = con.execute(
        f"select Columns, DateFormat, TimestampFormat from sniff_csv($path, {_sql_args(plain)})",
        {"path": str(path), **plain},
    ).fetchone()
    assert sniffed is not None
    without = {c["name"]: c["type"] for c in sniffed[0]}
    text = {**plain, "auto_detect": False, "columns": dict.fromkeys(names, "VARCHAR")}
    for column, kind in columns.items():
        other = without.get(column, "VARCHAR")
        if column in declared or (kind == other and kind != "VARCHAR"):
            continue
        q = _quote(column)
        values = [
            str(r[0]).strip()
            for r in con.execute(
                f"select {q} from read_csv($path, {_sql_args(text)}) "
                f"where {q} is not null and trim({q}) <> '' limit 20",
                {"path": str(path), **text},
            ).fetchall()
        ]
        problem = _number_setting(options, column, kind, other, values) or _date_setting(
            options, column, kind, other, values, {"DATE": sniffed[1], "TIMESTAMP": sniffed[2]}
        )
        if problem:
            raise SourceFileError(shown, problem)


def _examples(values: list[str]) -> str:
    return ", ".join(repr(clip(v, 40)) for v in values[:3])


def _number_setting(
    options: CsvOptions, column: str, kind: str, other: str, values: list[str]
) -> str | None:
    """What is wrong with decimal_comma / thousands for a column that would land as text."""
    if kind != "VARCHAR" or not (options.decimal_comma or options.thousands):
        return None
    examples = _examples(values)
    if other in NUMERIC or other.startswith("DECIMAL"):
        setting = "decimal_comma" if options.decimal_comma else "thousands"
        point = " have a '.' decimal point" if options.decimal_comma else " do not use it"
        also = (
            " (or, if '.' separates thousands there, set csv.thousands: '.')"
            if options.decimal_comma and not options.thousands
            else ""
        )
        return (
            f"column {column}: {setting} is set but values like {examples}{point} (the "
            f"column would land as text); remove csv.{setting}{also}"
        )
    if values and all(_NUMBER_LIKE.fullmatch(v) for v in values):
        settings = ", ".join(
            f"{k}: {v!r}" if isinstance(v, str) else f"{k}: true"
            for k, v in (("decimal_comma", options.decimal_comma), ("thousands", options.thousands))
            if v
        )
        return (
            f"column {column}: values like {examples} do not all read as numbers with "
            f"{settings} (the column would land as text); make csv.decimal_comma and "
            f"csv.thousands match the file, or declare types: {{{column}: VARCHAR}}"
        )
    return None


def _date_setting(
    options: CsvOptions,
    column: str,
    kind: str,
    other: str,
    values: list[str],
    detected: dict[str, str | None],
) -> str | None:
    """What is wrong with date_format / timestamp_format for a column that would not land as
    the dates the file has without them."""
    dates = bool(values) and all(_DATE_LIKE.fullmatch(v) for v in values)
    for temporal, setting in (("DATE", "date_format"), ("TIMESTAMP", "timestamp_format")):
        fmt = getattr(options, setting)
        if not fmt or kind == temporal:
            continue
        if other == temporal or (temporal == "DATE" and dates and kind == "VARCHAR"):
            found = detected[temporal]
            hint = f", which read as {found!r}" if found and other == temporal else ""
            landing_as = "text" if kind == "VARCHAR" else kind
            return (
                f"column {column}: {setting} {fmt!r} does not match values like "
                f"{_examples(values)}{hint} (the column would land as {landing_as}); set "
                f"csv.{setting} to their format, or remove it"
            )
    return None


def _strict_query(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    shown: str,
    read: ReadOptions,
    tab: bool,
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The strict `read_csv` query, its parameters and its columns: dialect from the header
    line, types from the sniffer run in strict mode, then auto-detection off."""
    options = read.csv
    delimiter, names = _header_dialect(path, shown, options, tab)
    declared = read.declared
    unknown = sorted(set(declared) - set(names))
    if unknown:
        raise SourceFileError(
            shown,
            f"types names columns not in the header: {unknown} (the header has "
            f"{', '.join(names)}); fix the table's types",
            1,
        )
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
        formats = {
            "dateformat": options.date_format or sniffed[1] or None,
            "timestampformat": options.timestamp_format or sniffed[2] or None,
        }
    except (duckdb.Error, ValueError):
        # The sniffer gives up on malformed files without saying where; a plain-text strict
        # read of the same file then fails on the exact line, which is what the user needs.
        columns = dict.fromkeys(names, "VARCHAR")
        formats = {}
    else:
        _settings_match(con, path, shown, args, names, columns, options, declared)
    undeclared = {c: t for c, t in columns.items() if c not in declared}
    if not (options.date_format and options.timestamp_format):
        _ambiguous_dates(
            con,
            path,
            shown,
            args,
            names,
            undeclared,
            {
                k: v
                for k, v in formats.items()
                if not (k == "dateformat" and options.date_format)
                and not (k == "timestampformat" and options.timestamp_format)
            },
            options.sample_size,
        )
    columns |= declared
    args |= {k: v for k, v in formats.items() if v}
    args |= {"auto_detect": False, "columns": columns}
    if read.quarantine:
        args |= {"store_rejects": True, "rejects_table": _rejects_table()}
    return f"select * from read_csv($path, {_sql_args(args)})", {"path": str(path), **args}, columns


def _rejects_table() -> str:
    with _counter_lock:
        return f"millpond_rejects_{next(_counter)}"


def _schema(con: duckdb.DuckDBPyConnection, columns: dict[str, str]) -> pa.Schema:
    """The Arrow schema DuckDB gives these columns, without reading the file."""
    select = ", ".join(f"cast(null as {t}) as {_quote(c)}" for c, t in columns.items())
    return con.execute(f"select {select} limit 0").fetch_arrow_table().schema


def open_csv(path: Path, read: ReadOptions, tab: bool = False) -> FileRead:
    """Open a delimited file strictly: schema now, rows by `batches()` or `copy_to()`."""
    shown = str(path)
    con = duckdb.connect()
    workdir: Path | None = None
    closed = False

    def close() -> None:
        nonlocal closed
        if not closed:
            closed = True
            con.close()
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)

    try:
        encoding = encoding_of(path, read.csv)
        readable = path
        if encoding not in _UTF8:
            workdir = Path(tempfile.mkdtemp(prefix="millpond-csv-"))
            readable = _transcoded(path, encoding, workdir)
        query, params, columns = _strict_query(con, readable, shown, read, tab)
        schema = _schema(con, columns)
    except duckdb.Error as exc:
        close()
        raise _csv_error(shown, exc) from None
    except BaseException:
        close()
        raise
    opened = FileRead(path.name, schema, lambda: iter(()), close=close)

    def collect_rejects() -> None:
        if "rejects_table" in params:
            opened.bad_rows = _bad_rows(con, params["rejects_table"])
            opened.rows_seen += len({b.line for b in opened.bad_rows})

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            reader = con.execute(query, params).to_arrow_reader(BATCH_ROWS)
            for batch in reader:
                opened.rows_seen += batch.num_rows
                yield batch
            collect_rejects()
        except (duckdb.Error, OSError, pa.ArrowException) as exc:
            raise _csv_error(shown, exc) from None
        finally:
            close()

    def copy_to(target: str, extra: list[str], threads: int) -> int:
        select = query.replace("select *", "select *" + "".join(f", {e}" for e in extra), 1)
        try:
            con.execute(f"set threads = {max(1, threads)}")
            done = con.execute(
                f"copy ({select}) to $target (format parquet, compression zstd)",
                {**params, "target": target},
            ).fetchone()
            rows = int(done[0]) if done else 0
            opened.rows_seen += rows
            collect_rejects()
            return rows
        except duckdb.Error as exc:
            raise _csv_error(shown, exc) from None
        finally:
            close()

    def locate(column: str, kind: str) -> tuple[str, str] | None:
        return _first_unfit(readable, shown, params, column, kind)

    opened.batches = batches
    opened.copy_to = copy_to
    opened.locate = locate
    return opened


_UNFIT = re.compile(r"""Could not convert string ["'](.*?)["'] to""")


def _first_unfit(
    path: Path, shown: str, params: dict[str, Any], column: str, kind: str
) -> tuple[str, str] | None:
    """The line of the first value of `column` that does not fit `kind`, and that value: the
    same strict read with the column typed fails exactly there. None when it cannot tell (a
    transcoded copy already removed, or the read does not fail)."""
    if not path.exists():
        return None
    args = {k: v for k, v in params.items() if k not in ("path", "store_rejects", "rejects_table")}
    args["columns"] = {**args["columns"], column: kind}
    con = duckdb.connect()
    try:
        con.execute(  # counting the column converts it (count(*) would not)
            f"select count({_quote(column)}) from read_csv($path, {_sql_args(args)})",
            {"path": str(path), **args},
        ).fetchall()
    except duckdb.Error as exc:
        error = _csv_error(shown, exc)
        value = _UNFIT.search(str(exc))
        if error.line is None:
            return None
        return f"line {error.line}", repr(clip(value.group(1), 60)) if value else ""
    finally:
        con.close()
    return None


def _bad_rows(con: duckdb.DuckDBPyConnection, table: str) -> list[BadRow]:
    rows = con.execute(
        f"select line, error_message, csv_line from {table} order by line, column_idx"
    ).fetchall()
    seen: dict[int | None, BadRow] = {}
    for line, message, text in rows:
        if line not in seen:  # one row may break several columns: its first reason is enough
            seen[line] = BadRow(line, _reason(message), clip(text or "", 300))
    return list(seen.values())


def _reason(message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else message
    return clip(re.sub(r"^[\w ]*Error: ", "", first), 200)


def _csv_error(shown: str, exc: Exception) -> SourceFileError:
    """DuckDB's message without its boilerplate: the reason, then the offending line (its
    first physical line: an unterminated quote makes DuckDB's "line" run to the file's end)."""
    message = str(exc)
    match = _LINE.search(message)
    head = re.split(r"Possible (?:fixes|solutions?)", message, maxsplit=1, flags=re.I)[0]
    original: str | None = None
    reasons: list[str] = []
    for block in re.split(r"\n\s*\n", head):
        lines = [re.sub(r"^[\w ]*Error: ", "", line.strip()) for line in block.strip().splitlines()]
        lines = [line for line in lines if line and not _LINE.match(line)]
        if lines and lines[0].startswith("Original Line:"):
            original = original or lines[0]
            # The rest is the line's continuation (rows swallowed by a quote), or a reason.
            reasons += [line for line in lines[1:] if _REASON.match(line)]
            continue
        reasons += [line for line in lines if not line.startswith(("*", "Column ", "This type"))]
    reason = clip("; ".join(reasons) or message, 180)
    if "max_line_size" in message or "maximum line size" in message.lower():
        reason += " (set csv.max_line_size)"
    if original:
        reason += f" ({clip(original, 200)})"
    return SourceFileError(shown, reason, int(match.group(1)) if match else None)


def read_csv(path: Path, options: CsvOptions) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """Stream a CSV file strictly as Arrow batches (the older entry point)."""
    opened = open_csv(path, ReadOptions(csv=options))
    return opened.schema, opened.batches()
