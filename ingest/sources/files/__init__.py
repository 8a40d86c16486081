"""The `files` source kind: export files dropped into a folder (an inbox).

Files are identified by content (sha256), not name, so a re-sent export lands once and a renamed
one is still recognised. What is where: `config` (the millpond.yml models, settings merged per
table), `discovery` (which files feed which table); where files come from is
`ingest.sources.inbox` (a folder or an S3 prefix) and how they are read `ingest.formats`. This
module is the kind: the files a run offers, settled, each read once it is new.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from millpond.core.config import MillpondConfig
from millpond.core.logs import logger
from millpond.core.registry import Probe, SourceItem, SourceKind, TableState
from millpond.ingest.contract import TablePolicy
from millpond.ingest.formats import Batches, FileRead, SourceFileError, open_file
from millpond.ingest.sources.files.config import FilesSourceConfig
from millpond.ingest.sources.files.discovery import (
    as_inbox,
    discover,
    file_format,
    shared_files,
    unclaimed_files,
)
from millpond.ingest.sources.inbox import Inbox, LocalInbox, open_inbox


class FilesSource:
    """One configured inbox."""

    # Items are content-addressed: a landed file still in the inbox can be re-landed (backfill).
    relandable = True

    def __init__(self, name: str, config: FilesSourceConfig, inbox: Path | Inbox) -> None:
        self.name = name
        self.config = config
        self.inbox = as_inbox(inbox)

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

    def probe(self, timeout: float) -> Probe:
        """The inbox exists (a folder, or an S3 prefix that lists) and which of its files each
        table would read; lists names only (no file is hashed or read, nothing remembered)."""
        where = f"sources.{self.name}.path"
        try:
            present = self.inbox.exists()
        except OSError as exc:
            return Probe(problems=(f"{where}: cannot list {self.inbox.location}: {exc}",))
        if not present:
            return Probe(
                problems=(
                    f"{where}: inbox folder {self.inbox.location} does not exist; create it "
                    "or correct the path",
                )
            )
        files = self.inbox.files()
        reads = {}
        for table in self.config.tables:
            names = [p.name for p in discover(self.inbox, self.config, table)]
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            reads[table] = f"{len(names)} file(s) in {self.inbox.location}" + (
                f": {shown}" if names else ""
            )
        unclaimed = [p.name for p in unclaimed_files(self.inbox, self.config)]
        detail = f"{self.inbox.location}: {len(files)} file(s)" + (
            f"; matching no table (not landed): {', '.join(unclaimed[:5])}" if unclaimed else ""
        )
        return Probe(detail=detail, reads=reads)

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
