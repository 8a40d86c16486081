"""What extract and load nodes share: one source table, named the same in both."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceTable:
    """The typed parameters of an extract or a load node."""

    source: str
    table: str

    @property
    def provides(self) -> str:
        """The dbt source this table feeds (`source:<source>.<table>`): dbt sources are named
        after millpond's source and table, so a model reading one waits for its load."""
        return f"source:{self.source}.{self.table}"
