"""What a run's "rows" and "duration" mean, in one place for the CLI summary, the ledger's
run summary (what the API serves) and `millpond status`.

- rows: the raw rows this run's load nodes brought into the warehouse (the rows of the
  partitions they registered or copied now). Rows of dbt relations and of the published
  snapshot are per node in the table and in `/runs/{id}/nodes`, never added to this total:
  summing them counted the same data once per layer.
- duration: wall time from the run's opening in the ledger to its close (the API's
  `duration_ms` = `finished_at - started_at`). The CLI prints the ledger's own figure, so the
  two are one number.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from millpond.core.graph import Graph
from millpond.nodes.load import LOAD_KIND

ROW_KINDS = (LOAD_KIND,)


def rows_loaded(graph: Graph, outcomes: Iterable[Any]) -> int:
    """Raw rows loaded by the run's load nodes (see the module docstring)."""
    by_id = graph.by_id
    return sum(
        o.rows or 0 for o in outcomes if o.node_id in by_id and by_id[o.node_id].kind in ROW_KINDS
    )
