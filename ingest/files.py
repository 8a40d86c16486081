"""The `files` source kind: export files dropped into a folder (an inbox).

Files are identified by content (sha256), not name, so a re-sent export lands once and a renamed
one is still recognised. Which table a file feeds comes from its name (`orders.csv`,
`orders_2024-01-31.csv`) or a declared glob; a file that no table claims is reported at run
start, never silently ignored.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ingest.formats import CsvOptions, SourceFileError, read_batches
from ingest.inbox import Inbox, LocalInbox, open_inbox
from ingest.inbox import sha256_of as sha256_of  # re-exported: where it lived before inbox.py
from millpond.core.config import MillpondConfig, S3Connection, SourceConfigBase, StrictModel
from millpond.core.logs import logger
from millpond.core.registry import SourceItem, SourceKind, TableState

EXTENSIONS = {".csv": "csv", ".xlsx": "xlsx"}


class FileTableConfig(StrictModel):
    """Which inbox files feed one raw table."""

    pattern: str | None = None  # glob relative to the source path; default: <table>[_-]*.<ext>


class FilesSourceConfig(SourceConfigBase):
    """Export files dropped into a folder (an inbox), one or more files per table."""

    kind: Literal["files"]
    # A folder (relative to millpond.yml) or an S3 prefix (`s3://bucket/prefix/`).
    path: str
    # How to reach the S3 server of an `s3://` path; unset: the lake's settings (ingest.inbox).
    s3: S3Connection | None = None
    format: Literal["auto", "csv", "xlsx"] = "auto"
    tables: dict[str, FileTableConfig]
    csv: CsvOptions = CsvOptions()
    # Files modified more recently than this are still arriving: left for the next run.
    settle_seconds: float = Field(0.0, ge=0)


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
    pattern = source.tables[table].pattern
    files = _visible_files(inbox)
    if pattern:
        chosen = [p for p in files if fnmatch.fnmatch(p.name, pattern)]
    else:
        chosen = [
            p
            for p in files
            if p.suffix.lower() in EXTENSIONS and table_for(p.name, source.tables) == table
        ]
    return sorted(chosen, key=lambda p: p.name)


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
        if not self.inbox.exists():
            raise SourceFileError(
                self.inbox.location, f"inbox folder does not exist (sources.{self.name}.path)"
            )
        files = discover(self.inbox, self.config, table)
        if self.config.settle_seconds:
            cutoff = time.time() - self.config.settle_seconds
            arriving = [p for p in files if self.inbox.mtime(p) > cutoff]
            for path in arriving:
                logger.info(
                    f"{table}: {path.name} changed in the last "
                    f"{self.config.settle_seconds:g} s; next run"
                )
            files = [p for p in files if p not in arriving]
        return [self._item(path) for path in files]

    def _item(self, path: Any) -> SourceItem:
        fmt = file_format(path, self.config.format)
        return SourceItem(
            name=path.name,
            fingerprint=self.inbox.fingerprint(path),
            size=self.inbox.size(path),
            read=lambda: self.inbox.read(path, lambda p: read_batches(p, fmt, self.config.csv)),
        )

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
