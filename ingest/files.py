"""The `files` source kind: export files dropped into a folder (an inbox).

Files are identified by content (sha256), not name, so a re-sent export lands once and a renamed
one is still recognised. Which table a file feeds comes from its name (`orders.csv`,
`orders_2024-01-31.csv`) or a declared glob; a file that no table claims is reported at run
start, never silently ignored.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import Field

from ingest.formats import CsvOptions, SourceFileError, read_batches
from millpond.core.config import MillpondConfig, SourceConfigBase, StrictModel
from millpond.core.logs import logger
from millpond.core.registry import SourceItem, SourceKind, TableState

EXTENSIONS = {".csv": "csv", ".xlsx": "xlsx"}


class FileTableConfig(StrictModel):
    """Which inbox files feed one raw table."""

    pattern: str | None = None  # glob relative to the source path; default: <table>[_-]*.<ext>


class FilesSourceConfig(SourceConfigBase):
    """Export files dropped into a folder (an inbox), one or more files per table."""

    kind: Literal["files"]
    path: str
    format: Literal["auto", "csv", "xlsx"] = "auto"
    tables: dict[str, FileTableConfig]
    csv: CsvOptions = CsvOptions()
    # Files modified more recently than this are still arriving: left for the next run.
    settle_seconds: float = Field(0.0, ge=0)


def file_format(path: Path, configured: str) -> str:
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


def _visible_files(inbox: Path) -> list[Path]:
    return [p for p in inbox.iterdir() if p.is_file() and not p.name.startswith((".", "~$"))]


def discover(inbox: Path, source: FilesSourceConfig, table: str) -> list[Path]:
    """Files of the inbox that feed this table, in name order."""
    if not inbox.is_dir():
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
    return sorted(chosen)


def unclaimed_files(inbox: Path, source: FilesSourceConfig) -> list[Path]:
    """Inbox files that feed no declared table: reported, never silently ignored."""
    if not inbox.is_dir():
        return []
    claimed = {p for t in source.tables for p in discover(inbox, source, t)}
    return sorted(p for p in _visible_files(inbox) if p not in claimed)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FilesSource:
    """One configured inbox."""

    def __init__(self, name: str, config: FilesSourceConfig, inbox: Path) -> None:
        self.name = name
        self.config = config
        self.inbox = inbox

    def items(self, table: str, state: TableState | None = None) -> list[SourceItem]:
        if not self.inbox.is_dir():
            raise SourceFileError(
                str(self.inbox), f"inbox folder does not exist (sources.{self.name}.path)"
            )
        files = discover(self.inbox, self.config, table)
        if self.config.settle_seconds:
            cutoff = time.time() - self.config.settle_seconds
            arriving = [p for p in files if p.stat().st_mtime > cutoff]
            for path in arriving:
                logger.info(
                    f"{table}: {path.name} changed in the last "
                    f"{self.config.settle_seconds:g} s; next run"
                )
            files = [p for p in files if p not in arriving]
        return [self._item(path) for path in files]

    def _item(self, path: Path) -> SourceItem:
        fmt = file_format(path, self.config.format)
        return SourceItem(
            name=path.name,
            fingerprint=sha256_of(path),
            size=path.stat().st_size,
            read=lambda: read_batches(path, fmt, self.config.csv),
        )

    def warnings(self) -> list[str]:
        return [
            f"{self.name}: {p.name} matches no table of the source; not landed"
            for p in unclaimed_files(self.inbox, self.config)
        ]


def _create(name: str, config: FilesSourceConfig, stack: MillpondConfig) -> FilesSource:
    return FilesSource(name, config, stack.resolve(config.path))


FILES = SourceKind(config_model=FilesSourceConfig, create=_create)
