"""What one table's landing carries along from item to item (ingest.landing, ingest.landing_items).

One extract lands a table's new items into one partition of its run. Between items it carries
where it writes, what the table accepts and already holds, the parts written so far, and what it
rejected or deferred: `TableLanding` holds all of it, so the steps take one object instead of a
dozen arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import pyarrow as pa

from millpond.core.registry import ReadReport, SourceItem
from millpond.ingest.contract import TablePolicy
from millpond.ingest.lake import Lake, PartFile, SourceFile
from millpond.ingest.rejections import Rejection


class LandedRead(NamedTuple):
    """An incremental read of this landing: the item, its report and the rows it landed
    (0 when it returned what a partition already holds)."""

    item: SourceItem
    report: ReadReport
    rows: int


@dataclass
class PartitionInProgress:
    """The parts written so far by one landing, and the table's columns once they join."""

    contract: dict[str, str]
    columns: dict[str, str] | None = None
    schema: pa.Schema | None = None
    parts: list[PartFile] = field(default_factory=list)
    files: list[SourceFile] = field(default_factory=list)
    quarantine: list[str] = field(default_factory=list)
    reads: list[LandedRead] = field(default_factory=list)
    boundary: list[str] = field(default_factory=list)
    # The newest partition's primary key and cursor column, as the raw layer uses them (None
    # before the table's first partition).
    keys: tuple[list[str], str | None] | None = None


@dataclass
class TableLanding:
    """One table's landing in one run: where its partition goes, what the table accepts, the
    fingerprints landed already (items and reads), the partition so far, and the items it
    rejected (by name, with the reason) or deferred to the next run."""

    lake: Lake
    source_name: str
    table: str
    run_id: str
    ingest_date: str
    folder: str
    policy: TablePolicy
    known: set[str]
    partition: PartitionInProgress
    rejected: list[Rejection] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)

    @property
    def settings(self) -> str:
        """Where the table's settings live in millpond.yml, for messages."""
        return f"sources.{self.source_name}.tables.{self.table}"

    def next_part_name(self) -> str:
        """The name the next part written gets (numbered from 0 in landing order)."""
        return f"part-{len(self.partition.parts):05d}.parquet"
