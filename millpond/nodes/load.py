"""The load node kind: a table's landed partitions into the warehouse's raw schema.

What "load" means is the target's business (a view over the lake's Parquet on DuckDB, a bulk
COPY on PostgreSQL); the node only asks the configured target and records the outcome.
"""

from __future__ import annotations

from ingest.lake import raw_table_name
from ingest.rejections import rejections_of_run
from millpond.core.graph import Node, policy
from millpond.core.registry import BuildScope, NodeKind, NodeReport, NodeScope
from millpond.nodes.source_table import SourceTable


def build(scope: BuildScope, nodes: list[Node]) -> list[Node]:
    config = scope.config
    loads = []
    for extract in nodes:
        params = extract.params
        if extract.kind != "extract" or not isinstance(params, SourceTable):
            continue
        source = config.sources[params.source]
        loads.append(
            Node(
                f"load.{params.source}.{params.table}",
                "load",
                (extract.id,),
                params=params,
                provides=(
                    params.provides,
                    f"relation:{config.target_config.raw_schema}."
                    f"{raw_table_name(params.source, params.table)}",
                ),
                **policy(source.load),
            )
        )
    return loads


def run(scope: NodeScope, node: Node, report: NodeReport) -> None:
    params: SourceTable = node.params
    try:
        loaded = scope.target.load_table(scope.lake, params.source, params.table)
    except Exception as exc:
        # Partitions loaded before the one refused are in the warehouse: the ledger says so.
        partial = getattr(exc, "loaded", None)
        if partial is not None:
            for partition_id in partial.partitions:
                scope.ledger.mark_partition_loaded(partition_id)
        raise
    for partition_id in loaded.partitions:
        scope.ledger.mark_partition_loaded(partition_id)
    scope.ledger.record_row_counts(scope.run_id, {loaded.relation: loaded.table_rows})
    report.rows, report.bytes = loaded.rows, loaded.bytes
    report.detail = {"partitions": loaded.partitions, "table_rows": loaded.table_rows}
    rejected = rejections_of_run(scope.lake, params.source, params.table, scope.run_id)
    if rejected:
        # The good files are in raw now; the run goes red naming what was kept out.
        raise FilesRejected(
            f"{params.source}.{params.table}: {len(rejected)} file(s) rejected at landing, "
            f"the table's other files are loaded: " + "; ".join(r.reason for r in rejected)
        )


class FilesRejected(Exception):
    """Files kept out of a table at landing: fixing them is the user's job, not a retry's."""

    retryable = False


LOAD = NodeKind(build=build, run=run)
