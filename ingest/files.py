"""The `files` source kind: export files dropped into a folder (an inbox).

Files are identified by content (sha256), not name, so a re-sent export lands once and a renamed
one is still recognised. Which table a file feeds comes from its name (`orders.csv`,
`orders_2024-01-31.csv`) or a declared glob; a file that no table claims is reported at run
start, never silently ignored. How a file is read (format, sheet, encoding, delimiter, date
formats, declared types) and what its table accepts (schema changes, bad rows) are set for the
source and overridden per table.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ingest.contract import BadRows, SchemaChange, TablePolicy
from ingest.formats import (
    Batches,
    CsvOptions,
    FileRead,
    Format,
    ReadOptions,
    SourceFileError,
    open_file,
)
from ingest.inbox import Inbox, LocalInbox, open_inbox
from ingest.inbox import sha256_of as sha256_of  # re-exported: where it lived before inbox.py
from millpond.core.config import MillpondConfig, S3Connection, SourceConfigBase, StrictModel
from millpond.core.logs import logger
from millpond.core.registry import SourceItem, SourceKind, TableState

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


class FileTableConfig(StrictModel):
    """Which inbox files feed one raw table, and the settings that differ from the source's."""

    pattern: str | None = None  # glob relative to the source path; default: <table>[_-]*.<ext>
    format: Format | None = None
    # Workbooks: the sheet by name or index (from 0), and the header's row (from 1). Two
    # tables may read two sheets of one workbook (same pattern, different sheet).
    sheet: str | int | None = None
    header_row: int | None = Field(None, ge=1)
    # Fields set here override the source's `csv:` (types are merged).
    csv: CsvOptions | None = None
    types: dict[str, str] = Field(default_factory=dict)
    on_schema_change: SchemaChange | None = None
    on_bad_rows: BadRows | None = None
    max_bad_rows: int | None = Field(None, ge=0)
    max_bad_fraction: float | None = Field(None, ge=0, le=1)


class FilesSourceConfig(SourceConfigBase):
    """Export files dropped into a folder (an inbox), one or more files per table."""

    kind: Literal["files"]
    # A folder (relative to millpond.yml) or an S3 prefix (`s3://bucket/prefix/`).
    path: str
    # How to reach the S3 server of an `s3://` path; unset: the lake's settings (ingest.inbox).
    s3: S3Connection | None = None
    format: Format = "auto"
    tables: dict[str, FileTableConfig]
    csv: CsvOptions = CsvOptions()
    types: dict[str, str] = Field(default_factory=dict)
    # What a new file may change in its table's columns (see docs/sources.md#files).
    on_schema_change: SchemaChange = "add_columns"
    # Rows that do not parse: fail the file, or keep them aside up to a threshold.
    on_bad_rows: BadRows = "fail"
    max_bad_rows: int | None = Field(None, ge=0)
    max_bad_fraction: float | None = Field(None, ge=0, le=1)
    # Files modified more recently than this are still arriving: left for the next run.
    settle_seconds: float = Field(0.0, ge=0)

    @field_validator("path")
    @classmethod
    def _named_folder(cls, value: str) -> str:
        """An empty path would make the project folder (millpond.yml, .millpond/) the inbox."""
        if not value.strip():
            raise ValueError(
                "must name the folder the exports are dropped into (e.g. inbox/erp) or an "
                "s3:// prefix; empty would read the project folder itself"
            )
        return value

    @model_validator(mode="after")
    def _tables_make_sense(self) -> FilesSourceConfig:
        """Said when the config is read, before any file is looked at: two tables with the
        same pattern (and the same sheet) would land every file twice, and a thousands
        separator that is the decimal point too cannot read any number."""
        seen: dict[tuple[str, str | int], str] = {}
        for table, spec in self.tables.items():
            clash = self.read_options(table).separators_clash()
            if clash:
                raise ValueError(f"tables.{table}.csv: {clash}")
            if not spec.pattern:
                continue
            key = (spec.pattern, spec.sheet if spec.sheet is not None else 0)
            if key in seen:
                raise ValueError(
                    f"tables {seen[key]} and {table} have the same pattern {spec.pattern!r}: "
                    "a file feeds one table; give each table its own pattern (or, for two "
                    "sheets of one workbook, its own sheet)"
                )
            seen[key] = table
        return self

    def read_options(self, table: str) -> ReadOptions:
        """How this table's files are read: the source's settings, the table's win."""
        spec = self.tables[table]
        csv = self.csv
        if spec.csv is not None:
            overrides = spec.csv.model_dump(exclude_unset=True)
            overrides["types"] = {**self.csv.types, **spec.csv.types}
            csv = self.csv.model_copy(update=overrides)
        return ReadOptions(
            format=spec.format or self.format,
            csv=csv,
            sheet=spec.sheet if spec.sheet is not None else 0,
            header_row=spec.header_row or 1,
            types={**self.types, **spec.types},
            quarantine=(spec.on_bad_rows or self.on_bad_rows) == "quarantine",
        )

    def policy(self, name: str, table: str) -> TablePolicy:
        spec = self.tables[table]
        read = self.read_options(table)
        return TablePolicy(
            on_schema_change=spec.on_schema_change or self.on_schema_change,
            declared=read.declared,
            on_bad_rows=spec.on_bad_rows or self.on_bad_rows,
            max_bad_rows=spec.max_bad_rows if spec.max_bad_rows is not None else self.max_bad_rows,
            max_bad_fraction=(
                spec.max_bad_fraction
                if spec.max_bad_fraction is not None
                else self.max_bad_fraction
            ),
            where=f"sources.{name}.tables.{table}",
        )


def file_format(path: Any, configured: str) -> str:
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


def _inbox(inbox: Path | Inbox) -> Inbox:
    return LocalInbox(inbox) if isinstance(inbox, Path) else inbox


def _visible_files(inbox: Path | Inbox) -> list[Any]:
    return _inbox(inbox).files()


def discover(inbox: Path | Inbox, source: FilesSourceConfig, table: str) -> list[Any]:
    """Files of the inbox (local paths or S3 objects) that feed this table, in name order."""
    if not _inbox(inbox).exists():
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
    if not _inbox(inbox).exists():
        return []
    claimed = {p for t in source.tables for p in discover(inbox, source, t)}
    return sorted((p for p in _visible_files(inbox) if p not in claimed), key=lambda p: p.name)


class FilesSource:
    """One configured inbox."""

    # Items are content-addressed: a landed file still in the inbox can be re-landed (backfill).
    relandable = True

    def __init__(self, name: str, config: FilesSourceConfig, inbox: Path | Inbox) -> None:
        self.name = name
        self.config = config
        self.inbox = _inbox(inbox)

    def items(self, table: str, state: TableState | None = None) -> list[SourceItem]:
        files = self._settled_files(table, quiet=False)
        shared = shared_files(self.inbox, self.config, table, files)
        return [self._item(path, table, shared.get(path, [])) for path in files]

    def offers_new(self, table: str, state: TableState, landed: set[str]) -> bool | None:
        """Whether any settled file of the table has content not landed yet; a file whose
        hash is not remembered (an S3 object never downloaded) counts as new."""
        if not self.inbox.exists():
            return None  # the extract says what is wrong
        for path in self._settled_files(table, quiet=True):
            known = self.inbox.known_fingerprint(path)
            if known is None or known not in landed:
                return True
        return False

    def _settled_files(self, table: str, quiet: bool) -> list[Any]:
        """The table's files, less those changed in the last `settle_seconds` (an export
        still being written waits for the next run)."""
        if not self.inbox.exists():
            raise SourceFileError(
                self.inbox.location, f"inbox folder does not exist (sources.{self.name}.path)"
            )
        files = discover(self.inbox, self.config, table)
        if not self.config.settle_seconds:
            return files
        cutoff = time.time() - self.config.settle_seconds
        arriving = [p for p in files if self.inbox.mtime(p) > cutoff]
        for path in arriving if not quiet else []:
            logger.info(
                f"{table}: {path.name} changed in the last "
                f"{self.config.settle_seconds:g} s; next run"
            )
        return [p for p in files if p not in arriving]

    def _item(self, path: Any, table: str, also: list[str]) -> SourceItem:
        read = self.config.read_options(table)
        fmt = file_format(path, read.format)

        def opened() -> FileRead:
            if also:
                raise SourceFileError(str(path), self._claimed_twice(table, also))
            if isinstance(self.inbox, LocalInbox):
                return open_file(path, fmt, read)
            # A downloaded copy (S3 inbox), removed once its batches are read: stream it.
            files: list[FileRead] = []

            def reader(local: Path) -> Batches:
                files.append(open_file(local, fmt, read))
                return files[0].schema, files[0].batches()

            _, rows = self.inbox.read(path, reader)
            file = files[0]
            file.batches, file.copy_to = (lambda: rows), None
            return file

        def batches() -> Batches:
            file = opened()
            return file.schema, file.batches()

        return SourceItem(
            name=path.name,
            fingerprint=self.inbox.fingerprint(path),
            size=self.inbox.size(path),
            read=batches,
            open=opened,
        )

    def _claimed_twice(self, table: str, also: list[str]) -> str:
        """Why a file that several tables claim lands in none of them."""
        patterns = {t: self.config.tables[t].pattern for t in [table, *also]}
        claims = "; ".join(
            f"{t}: " + (f"pattern {p!r}" if p else "its name") for t, p in patterns.items()
        )
        return (
            f"matches tables {', '.join([table, *also])} ({claims} in sources.{self.name}.tables);"
            " a file feeds one table: narrow the patterns so that only one matches it; "
            "it lands in none until then"
        )

    def policy(self, table: str) -> TablePolicy:
        """What the table accepts (landing checks each new file against it)."""
        return self.config.policy(self.name, table)

    def warnings(self) -> list[str]:
        return [
            f"{self.name}: {p.name} matches no table of the source; not landed"
            for p in unclaimed_files(self.inbox, self.config)
        ]


def _create(name: str, config: FilesSourceConfig, stack: MillpondConfig) -> FilesSource:
    conn = config.s3 or (stack.lake if stack.lake.url.startswith("s3://") else None)
    inbox = open_inbox(config.path, stack.resolve, conn, stack.state, name)
    return FilesSource(name, config, inbox)


FILES = SourceKind(config_model=FilesSourceConfig, create=_create)
