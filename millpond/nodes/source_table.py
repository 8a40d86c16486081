"""What extract and load nodes share: one source table, named the same in both."""

from __future__ import annotations

from dataclasses import dataclass

from millpond.core.registry import NodeReport


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


def nothing_to_do(report: NodeReport) -> None:
    """How an extract or load node with nothing new is recorded (`NodeKind.up_to_date`)."""
    report.status, report.rows, report.bytes = "unchanged", 0, 0
    report.detail = {"unchanged": True}
