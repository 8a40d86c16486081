"""The extract node kind: land what a source offers for one table as a raw partition.

One node per configured source table, whatever the source kind; landing is generic
(ingest.landing), the source kind only says what is new and how to read it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from millpond.core.graph import Node, policy
from millpond.core.locks import extract_lock
from millpond.core.registry import (
    SOURCES,
    BuildScope,
    NodeKind,
    NodeReport,
    NodeScope,
    Settle,
    Source,
    Stage,
)
from millpond.ingest.landing import LandingResult, land_table, table_state
from millpond.ingest.rejections import record_rejections
from millpond.metadata.records import PartitionLanded, Rejection, SourceState
from millpond.nodes.monitors.volume import check_landing
from millpond.nodes.source_table import SourceTable, nothing_to_do

EXTRACT_KIND = "extract"  # the node kind's registered name: `Node.kind` of every extract node


def source_of(scope: NodeScope, name: str) -> Source:
    """The configured source, built once per run by its kind."""
    config = scope.config.sources[name]
    return scope.resource(
        f"source:{name}", lambda: SOURCES.get(config.kind).create(name, config, scope.config)
    )


def build(scope: BuildScope, nodes: list[Node]) -> list[Node]:
    config = scope.config
    return [
        Node(
            f"extract.{name}.{table}",
            EXTRACT_KIND,
            params=SourceTable(name, table),
            **policy(source.extract),
        )
        for name, source in sorted(config.sources.items())
        for table in source.table_names()
    ]


def run(scope: NodeScope, node: Node, report: NodeReport) -> None:
    params: SourceTable = node.params
    source = source_of(scope, params.source)
    # Two runs at once must not both land the same new item: check-and-land is exclusive per
    # table (on this machine; shared mode across machines needs the catalog, a later issue).
    with extract_lock(scope.config.locks_dir, params.source, params.table):
        result = land_table(scope.lake, params.source, source, params.table, scope.run_id)
    report.rows, report.bytes = result.rows, result.bytes
    report.detail = {"skipped_files": result.skipped}
    if result.read is not None:  # an incremental read: sent, dropped, landed, cursor
        report.detail["read"] = result.read
    if result.warnings:  # e.g. a stalled cursor: in the summary and the run's ledger row
        report.detail["warnings"] = result.warnings
    if result.rows and result.seconds > 0:
        report.detail["rows_per_second"] = round(result.rows / result.seconds)
    _report_rejections(scope, params, result, report)
    if result.manifest is not None:
        m = result.manifest
        scope.ledger.write(
            PartitionLanded(
                params.source,
                params.table,
                m.partition_id,
                m.sha256,
                m.rows,
                m.bytes,
                dt.datetime.fromisoformat(m.landed_at),
                scope.run_id,
            )
        )
        report.detail["partition"] = m.partition_id
        if m.cursor is not None:  # mirrored in the ledger once the partition is durable
            scope.ledger.write(SourceState(params.source, params.table, m.cursor))
        # After the partition is recorded: an anomaly at error severity fails the node (and
        # so the run's publish), the landed partition stays (docs/monitoring.md). An empty
        # partition of an incremental read carries changed keys, not a volume: not judged.
        if m.rows or result.read is None:
            check_landing(scope, params.source, params.table, m.rows or 0, report)


def _report_rejections(
    scope: NodeScope, params: SourceTable, result: LandingResult, report: NodeReport
) -> None:
    """Rejected files and quarantined rows, in the node's detail, the ledger and the lake.

    The extract itself succeeds: the table's good files are landed and its load loads them;
    the load node then fails naming the rejected files, so the run is red (and notifies)
    while the good data is in raw, and stays red on every run until the file is corrected
    or the table's settings let it in."""
    record_rejections(scope.lake, params.source, params.table, scope.run_id, result.rejected)
    for rejection in result.rejected:
        scope.ledger.write(
            Rejection(
                scope.run_id,
                params.source,
                params.table,
                rejection.file,
                rejection.fingerprint,
                rejection.reason,
                "rejected",
                rejection.bad_rows,
            )
        )
    if result.rejected:
        report.detail["rejected_files"] = [
            {"file": r.file, "reason": r.reason} for r in result.rejected
        ]
    if result.deferred:
        report.detail["deferred_files"] = result.deferred
    if result.manifest is not None and result.bad_rows:
        report.detail["bad_rows"] = result.bad_rows
        report.detail["quarantine"] = result.manifest.quarantine
        for landed in result.manifest.files:
            if landed.bad_rows:
                scope.ledger.write(
                    Rejection(
                        scope.run_id,
                        params.source,
                        params.table,
                        landed.name,
                        landed.sha256,
                        f"{landed.bad_rows} bad rows quarantined",
                        "quarantined",
                        landed.bad_rows,
                    )
                )


def warnings(scope: Any) -> list[str]:
    """What every configured source wants to tell the user at run start. A source that
    cannot even be looked at (an S3 inbox whose bucket is missing) is said here and fails its
    own extracts, naming the key; the other sources' tables still land."""
    found = []
    for name in sorted(scope.config.sources):
        try:
            found += source_of(scope, name).warnings()
        except Exception as exc:
            found.append(f"sources.{name}: {exc}; its tables' extracts will fail")
    return found


def up_to_date(scope: NodeScope, node: Node) -> Settle | None:
    """Nothing to land: the source can tell from a listing that every item it offers is
    already in a partition of the table."""
    params: SourceTable = node.params
    offers_new = getattr(source_of(scope, params.source), "offers_new", None)
    if offers_new is None:
        return None
    existing = scope.lake.manifests(params.source, params.table)
    landed = {f.sha256 for m in existing for f in m.files}
    if offers_new(params.table, table_state(existing), landed) is not False:
        return None
    return nothing_to_do


EXTRACT = NodeKind(build=build, run=run, up_to_date=up_to_date, stage=Stage.EXTRACT)
