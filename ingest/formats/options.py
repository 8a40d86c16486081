"""How to read one file: the settings a source gives and a table may override."""

from __future__ import annotations

import codecs
from typing import Literal

from pydantic import Field, field_validator

from millpond.core.config import StrictModel

Format = Literal["auto", "csv", "tsv", "xlsx", "parquet", "json", "jsonl"]


class CsvOptions(StrictModel):
    """Overrides for DuckDB's CSV sniffer; unset values are detected."""

    delimiter: str | None = None
    header: bool | None = None
    quote: str | None = None
    # Any Python codec (cp1252, utf-16, latin-1...); unset: utf-8, or utf-16 when the file
    # starts with a UTF-16 byte-order mark.
    encoding: str | None = None
    # Declared column types win over the sniffer's guess, e.g. {customer_code: VARCHAR}.
    types: dict[str, str] = Field(default_factory=dict)
    # Rows the sniffer samples to guess types; -1 reads the whole file first (slower, surer).
    sample_size: int = Field(20_480, ge=-1)
    # strptime formats, e.g. "%d/%m/%Y"; unset: detected, and an ambiguous one is an error.
    date_format: str | None = None
    timestamp_format: str | None = None
    # 1.234,5 style numbers (the delimiter is then usually ";").
    decimal_comma: bool = False
    # A thousands separator inside numbers ("." in 1.234,50); unset: none.
    thousands: str | None = Field(None, min_length=1, max_length=1)
    # Longest line (bytes) a file may have; DuckDB's default is 2 MB.
    max_line_size: int | None = Field(None, ge=1024)

    @field_validator("encoding")
    @classmethod
    def _known_codec(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return codecs.lookup(value).name
        except LookupError:
            raise ValueError(f"unknown encoding {value!r} (e.g. utf-8, cp1252, utf-16)") from None


class ReadOptions(StrictModel):
    """Everything a reader needs for one file of one table (source settings, table wins)."""

    format: Format = "auto"
    csv: CsvOptions = CsvOptions()
    # Workbooks: the sheet (name, or index from 0) and the row (from 1) holding the header.
    sheet: str | int = 0
    header_row: int = Field(1, ge=1)
    # Declared column types for any format (merged over csv.types).
    types: dict[str, str] = Field(default_factory=dict)
    # Bad rows (CSV): kept aside with their line and reason instead of failing the file.
    quarantine: bool = False

    def separators_clash(self) -> str | None:
        """Why the thousands separator cannot be used: it is the decimal point too ('.'
        unless decimal_comma). Checked once the source's and the table's settings merge."""
        point = "," if self.csv.decimal_comma else "."
        if self.csv.thousands != point:
            return None
        fix = "set decimal_comma: true" if point == "." else "use thousands: '.'"
        return (
            f"thousands {point!r} is also the decimal point (decimal_comma: "
            f"{str(self.csv.decimal_comma).lower()}); {fix}"
        )

    @property
    def declared(self) -> dict[str, str]:
        return {**self.csv.types, **self.types}
