"""What a `files` source is in millpond.yml: an inbox, how its files are read, which tables.

How a file is read (format, sheet, encoding, delimiter, date formats, declared types) and what
its table accepts (schema changes, bad rows) are set for the source and overridden per table;
`read_options` and `policy` merge the two, the table's settings winning.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from millpond.core.config import S3Connection, SourceConfigBase, StrictModel
from millpond.ingest.contract import BadRows, SchemaChange, TablePolicy
from millpond.ingest.formats import CsvOptions, Format, ReadOptions


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
    # How to reach the S3 server of an `s3://` path; unset: the lake's settings
    # (ingest.sources.inbox).
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
