"""JSON exports: JSON lines (.jsonl, one object a line) or one array of objects (.json).

Read by DuckDB's JSON reader (types inferred, nested objects as STRUCT); a line that is not
JSON fails the file with its line number.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from millpond.ingest.formats.base import FileRead, arrow_read, with_declared_types
from millpond.ingest.formats.errors import SourceFileError, clip
from millpond.ingest.formats.options import ReadOptions

_LINE = re.compile(r"line (\d+)", re.IGNORECASE)


def open_json(path: Path, read: ReadOptions, lines: bool) -> FileRead:
    con = duckdb.connect()
    try:
        fmt = "newline_delimited" if lines else "auto"
        table = con.execute(
            "select * from read_json($path, format = $fmt, sample_size = -1)",
            {"path": str(path), "fmt": fmt},
        ).fetch_arrow_table()
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0] if str(exc) else repr(exc)
        message = re.sub(r"^[\w ]*Error: ", "", first).replace(f'in file "{path}", ', "")
        match = _LINE.search(str(exc))
        line = int(match.group(1)) if match else None
        if line is not None and lines:
            # DuckDB counts newline-delimited lines from 2 (checked with 1.5.5): name the
            # line a text editor shows.
            line -= 1
            message = _LINE.sub(f"line {line}", message, count=1)
        raise SourceFileError(str(path), clip(message, 200), line) from None
    finally:
        con.close()
    return arrow_read(path.name, with_declared_types(str(path), table, read.declared))
