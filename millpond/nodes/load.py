"""The load node kind: a table's landed partitions into the warehouse's raw schema.

What "load" means is the target's business (a view over the lake's Parquet on DuckDB, a bulk
COPY on PostgreSQL); the node only asks the configured target and records the outcome.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from millpond.core.graph import Node, policy
from millpond.core.logs import logger
from millpond.core.registry import BuildScope, NodeKind, NodeReport, NodeScope, Settle, Stage
from millpond.ingest.lake import raw_table_name
from millpond.ingest.rejections import rejections_of_run
from millpond.metadata import reads
from millpond.metadata.records import PartitionLanded, PartitionLoaded, RowCounts
from millpond.nodes.extract import EXTRACT_KIND
from millpond.nodes.source_table import SourceTable, nothing_to_do

LOAD_KIND = "load"  # the node kind's registered name: `Node.kind` of every load node
RELATION = "relation:"  # what a load node provides: the raw relation it fills


def build(scope: BuildScope, nodes: list[Node]) -> list[Node]:
    config = scope.config
    loads = []
    for extract in nodes:
        params = extract.params
        if extract.kind != EXTRACT_KIND or not isinstance(params, SourceTable):
            continue
        source = config.sources[params.source]
        loads.append(
            Node(
                f"load.{params.source}.{params.table}",
                LOAD_KIND,
                (extract.id,),
                params=params,
                provides=(
                    params.provides,
                    f"{RELATION}{config.target_config.raw_schema}."
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
                scope.ledger.write(PartitionLoaded(partition_id))
        raise
    for partition_id in loaded.partitions:
        scope.ledger.write(PartitionLoaded(partition_id))
    _record_unrecorded(scope, params, loaded.partitions)
    scope.ledger.write(RowCounts(scope.run_id, {loaded.relation: loaded.table_rows}))
    report.rows, report.bytes = loaded.rows, loaded.bytes
    report.detail = {"partitions": loaded.partitions, "table_rows": loaded.table_rows}
    rejected = rejections_of_run(scope.lake, params.source, params.table, scope.run_id)
    if rejected:
        # The good files are in raw now; the run goes red naming what was kept out.
        raise FilesRejected(
            f"{params.source}.{params.table}: {len(rejected)} file(s) rejected at landing, "
            f"the table's other files are loaded: " + "; ".join(r.reason for r in rejected)
        )


def _record_unrecorded(scope: NodeScope, params: SourceTable, just_loaded: list[str]) -> None:
    """Record in the ledger the partitions the warehouse holds that the ledger does not list
    as loaded: a run killed after a manifest was written but before the ledger heard of it,
    or between the warehouse's commit and the ledger's write. Otherwise the ledger's
    `loaded_at` stays NULL (or the partition unknown) for good, and every later run with
    nothing new still starts a flow to find nothing to load."""
    try:
        recorded = {
            p for p, _ in reads.loaded_partitions(scope.ledger, params.source, params.table)
        }
        held = scope.target.loaded_partitions(params.source, params.table)
    except Exception as exc:  # a ledger down or buffering: the next run reconciles
        logger.debug(f"cannot reconcile loaded partitions now ({exc})")
        return
    missing = held - recorded - set(just_loaded)
    if missing:
        mark_loaded(scope.ledger, scope.lake, params.source, params.table, missing)


def mark_loaded(ledger: Any, lake: Any, source: str, table: str, partition_ids: set[str]) -> int:
    """Mark these partitions of a table loaded in the ledger, recording first what their
    manifests say (a partition the ledger never heard of has no row that a bare
    `PartitionLoaded` could update). Shared by the load node and `millpond doctor`;
    returns how many were marked."""
    marked = 0
    for m in lake.manifests(source, table):
        if m.partition_id in partition_ids:
            landed_at = dt.datetime.fromisoformat(m.landed_at)
            ledger.write(
                PartitionLanded(
                    m.source,
                    m.table,
                    m.partition_id,
                    m.sha256,
                    m.rows,
                    m.bytes,
                    landed_at,
                    m.run_id,
                )
            )
            ledger.write(PartitionLoaded(m.partition_id))
            marked += 1
    return marked


class FilesRejected(Exception):
    """Files kept out of a table at landing: fixing them is the user's job, not a retry's."""

    retryable = False


def up_to_date(scope: NodeScope, node: Node) -> Settle | None:
    """Nothing to load: the ledger has exactly the table's landed partitions (ids and
    manifests) in the warehouse."""
    params: SourceTable = node.params
    landed = {(m.partition_id, m.sha256) for m in scope.lake.manifests(params.source, params.table)}
    if landed != set(reads.loaded_partitions(scope.ledger, params.source, params.table)):
        return None
    relation = next(p.removeprefix(RELATION) for p in node.provides if p.startswith(RELATION))
    table_rows = reads.latest_row_count(scope.ledger, relation)
    if table_rows is None:
        return None

    def settle(report: NodeReport) -> None:
        nothing_to_do(report)  # the raw relation's rows are recorded every run, as run() does
        scope.ledger.write(RowCounts(scope.run_id, {relation: table_rows}))
        report.detail["table_rows"] = table_rows

    return settle


LOAD = NodeKind(build=build, run=run, up_to_date=up_to_date, stage=Stage.LOAD)
