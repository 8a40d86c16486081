"""Which inbox files feed which table of a `files` source: by the file's name or a pattern.

A file's table comes from its name (`orders.csv`, `orders_2024-01-31.csv`) or a declared glob;
a file that no table claims is reported at run start, never silently ignored, and a file two
tables claim lands in neither (said by name).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from millpond.ingest.formats import SourceFileError
from millpond.ingest.sources.files.config import FilesSourceConfig
from millpond.ingest.sources.inbox import Inbox, LocalInbox

EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "csv",  # delimiter detected from the header line, tab included
    ".xlsx": "xlsx",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}


def file_format(path: Any, configured: str) -> str:
    """The format a file is read as: the configured one, else its extension's."""
    if configured != "auto":
        return configured
    try:
        return EXTENSIONS[path.suffix.lower()]
    except KeyError:
        raise SourceFileError(str(path), f"unknown file type {path.suffix!r}") from None


def table_for(file_name: str, tables: Iterable[str]) -> str | None:
    """The declared table a file feeds: its name is the table, or the table plus a suffix
    starting with a digit (`orders_2024-01-31.csv`); the longest such table wins, so a table
    named `sales_2023` still gets `sales_2023.csv`."""
    stem = file_name.split(".", 1)[0].lower()
    matches = [t for t in tables if stem == t or re.match(rf"{re.escape(t)}[_-]\d", stem)]
    return max(matches, key=len) if matches else None


def as_inbox(inbox: Path | Inbox) -> Inbox:
    """A folder's path as an inbox (tests and benches pass paths)."""
    return LocalInbox(inbox) if isinstance(inbox, Path) else inbox


def _visible_files(inbox: Path | Inbox) -> list[Any]:
    return as_inbox(inbox).files()


def discover(inbox: Path | Inbox, source: FilesSourceConfig, table: str) -> list[Any]:
    """Files of the inbox (local paths or S3 objects) that feed this table, in name order."""
    if not as_inbox(inbox).exists():
        return []
    return claimed_by(_visible_files(inbox), source, table)


def claimed_by(files: list[Any], source: FilesSourceConfig, table: str) -> list[Any]:
    """Which of `files` feed this table (by its pattern, else by name), in name order."""
    pattern = source.tables[table].pattern
    if pattern:
        chosen = [p for p in files if fnmatch.fnmatch(p.name, pattern)]
    else:
        chosen = [
            p
            for p in files
            if p.suffix.lower() in EXTENSIONS and table_for(p.name, source.tables) == table
        ]
    return sorted(chosen, key=lambda p: p.name)


def shared_files(
    inbox: Path | Inbox, source: FilesSourceConfig, table: str, files: list[Any]
) -> dict[Any, list[str]]:
    """The files of `table` that other tables claim too (by pattern or name), with those
    tables; two sheets of one workbook read by two tables are not shared."""
    mine = set(files)
    shared: dict[Any, list[str]] = {}
    if not mine:
        return shared
    read = source.read_options(table)
    listed = _visible_files(inbox)  # listed once, whatever the number of tables
    for other in source.tables:
        if other == table:
            continue
        sheets_differ = source.read_options(other).sheet != read.sheet
        for path in claimed_by(listed, source, other):
            if path not in mine:
                continue
            if sheets_differ and _is_workbook(path, read.format):
                continue  # two sheets of one workbook feed two tables
            shared.setdefault(path, []).append(other)
    return shared


def _is_workbook(path: Any, configured: str) -> bool:
    try:
        return file_format(path, configured) == "xlsx"
    except SourceFileError:
        return False


def unclaimed_files(inbox: Path | Inbox, source: FilesSourceConfig) -> list[Any]:
    """Inbox files that feed no declared table: reported, never silently ignored."""
    if not as_inbox(inbox).exists():
        return []
    claimed = {p for t in source.tables for p in discover(inbox, source, t)}
    return sorted((p for p in _visible_files(inbox) if p not in claimed), key=lambda p: p.name)
