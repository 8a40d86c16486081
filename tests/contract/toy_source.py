"""A toy source kind, defined only here: one module plus one registration (conftest.py), to
show that a new source kind passes the contract suite without touching millpond.

`kind: inline` lands records written in millpond.yml itself:
`sources: {memo: {kind: inline, tables: {notes: {records: [{id: 1, text: a}]}}}}`. A table's
records are one item whose fingerprint is their hash, so they land once and land again only
when the config's records change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from millpond.core.config import MillpondConfig, SourceConfigBase
from millpond.core.registry import SourceItem, SourceKind, TableState


class InlineTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    records: list[dict[str, Any]]


class InlineSourceConfig(SourceConfigBase):
    """`kind: inline` with `tables: {name: {records: [...]}}`."""

    kind: Literal["inline"]
    tables: dict[str, InlineTable]


class InlineSource:
    """The records of each configured table, as one item per table."""

    def __init__(self, name: str, config: InlineSourceConfig) -> None:
        self.name = name
        self.config = config

    def items(self, table: str, state: TableState) -> list[SourceItem]:
        records = self.config.tables[table].records
        text = json.dumps(records, sort_keys=True, default=str)

        def read() -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
            batch = pa.RecordBatch.from_pylist(records)
            return batch.schema, iter([batch])

        fingerprint = hashlib.sha256(text.encode()).hexdigest()
        return [SourceItem(f"{table}.inline", fingerprint, len(text), read)]

    def warnings(self) -> list[str]:
        return []


def create(name: str, config: InlineSourceConfig, stack: MillpondConfig) -> InlineSource:
    return InlineSource(name, config)


INLINE = SourceKind(config_model=InlineSourceConfig, create=create)
