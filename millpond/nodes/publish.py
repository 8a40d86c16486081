"""The publish node kind: after everything else succeeded, expose the marts to readers.

It waits for every sink of the graph, so any failure anywhere keeps the published marts as
they were. Which schemas are published: `publish.schemas`, or else every schema that a node
marked publishable (dbt's table and incremental models; load nodes mark the raw schema when
the raw relations are published: `publish.raw`, by default in an ingest-only project, one
without a dbt section). An ingest-only project with `publish.raw: false` has no publish node:
nothing is published, and the run summary says so (`nothing_published`).

When every node with a fingerprint was found unchanged (millpond.nodes.fingerprints), the
schemas are those of the published run and the target finds its published marts readable
(`published_health`: DuckDB's `current` resolves and opens), readers already have this run's
marts: publish is `unchanged` and `current` keeps pointing at the same snapshot. With the raw
schema published, publish's own fingerprint covers the partitions loaded into each raw table,
so a run that loaded nothing new publishes nothing new, and one that did publishes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from millpond.core.config import MillpondConfig
from millpond.core.graph import Node, sinks
from millpond.core.logs import logger
from millpond.core.registry import BuildScope, NodeKind, NodeReport, NodeScope, Settle, Stage
from millpond.metadata import reads
from millpond.metadata.records import Fingerprints
from millpond.nodes.fingerprints import PUBLISH_KIND, digest, run_fingerprints
from millpond.nodes.monitors.volume import check_marts

PUBLISH_NODE = "publish"  # the id of the one publish node
PUBLISHABLE = "publishable:"


RELATION = "relation:"  # what a load node provides: the raw relation it fills


@dataclass(frozen=True)
class PublishParams:
    schemas: tuple[str, ...]
    # The tables (source, table) whose raw relations are published with the raw schema: the
    # partitions loaded into them are part of publish's fingerprint.
    raw: tuple[tuple[str, str], ...] = ()


def build(scope: BuildScope, nodes: list[Node]) -> list[Node]:
    config = scope.config
    declared = config.publish.schemas
    raw_schema = config.target_config.raw_schema
    found = {
        p.removeprefix(PUBLISHABLE) for n in nodes for p in n.provides if p.startswith(PUBLISHABLE)
    }
    if declared is not None:
        extra = (raw_schema,) if config.publishes_raw and raw_schema not in declared else ()
        schemas = tuple(declared) + extra
    else:
        schemas = tuple(sorted(found))
    if not schemas and not config.has_dbt:
        return []  # ingest-only with publish.raw: false: nothing to publish (nothing_published)
    raw = tuple(
        sorted(
            (n.params.source, n.params.table)
            for n in nodes
            if raw_schema in schemas
            and any(p.startswith(f"{RELATION}{raw_schema}.") for p in n.provides)
            and hasattr(n.params, "source")
            and hasattr(n.params, "table")
        )
    )
    return [
        Node(
            PUBLISH_NODE,
            PUBLISH_KIND,
            sinks(nodes),
            retries=1,
            params=PublishParams(schemas, raw),
        )
    ]


def nothing_published(config: MillpondConfig, graph: Any) -> str | None:
    """Why a run of this graph publishes nothing by design (an ingest-only project with
    `publish.raw: false`), for the run summary; None when the graph has a publish node or
    publish was only left out by a selection (which says so itself)."""
    if config.has_dbt or config.publishes_raw or any(n.id == PUBLISH_NODE for n in graph.nodes):
        return None
    return (
        "nothing published: publish.raw is false and there is no dbt section, so readers "
        "(API, notebooks, `millpond query`) get no new data from this run"
    )


def run(scope: NodeScope, node: Node, report: NodeReport) -> None:
    params: PublishParams = node.params
    if not params.schemas:
        raise RuntimeError(
            "nothing to publish: no table or incremental models, and publish.schemas is not set"
        )
    settle = up_to_date(scope, node)
    if settle is not None:
        return settle(report)
    # The marts' row counts against the published runs' before readers see them: an anomaly
    # at error severity fails publish, and readers keep the last good run.
    check_marts(scope, params.schemas, PUBLISH_KIND, report)
    published = scope.target.publish(scope.run_id, list(params.schemas), scope.config.publish.keep)
    report.rows = published.rows
    report.bytes = published.bytes
    report.detail.update(snapshot=published.location, tables=published.tables)
    fingerprint = _fingerprint(scope, params)
    scope.ledger.write(Fingerprints(scope.run_id, {node.id: (fingerprint, None)}))


def _fingerprint(scope: NodeScope, params: PublishParams) -> str | None:
    """What publish exposes: its schemas and, with raw tables published, the partitions
    loaded into each (None when the ledger cannot say: then publish always runs)."""
    value: dict[str, Any] = {"schemas": params.schemas}
    if params.raw:
        try:
            value["raw"] = {
                f"{source}.{table}": reads.loaded_partitions(scope.ledger, source, table)
                for source, table in params.raw
            }
        except Exception as exc:
            logger.info(f"cannot read the loaded partitions ({exc}): publishing")
            return None
    return digest(value)


def up_to_date(scope: NodeScope, node: Node) -> Settle | None:
    """Readers have this run's marts already: every node with a fingerprint was found
    unchanged in this run, and the schemas are those of the published run."""
    params: PublishParams = node.params
    fingerprints = run_fingerprints(scope)
    graph = getattr(scope, "graph", None)
    members = [n.id for n in graph.nodes if n.kind in fingerprints.kinds] if graph else []
    # With no dbt node (ingest-only), publish's own fingerprint covers the raw partitions.
    if not (fingerprints.all_unchanged(members) or (not members and params.raw)):
        return None
    fingerprint = _fingerprint(scope, params)
    if fingerprint is None or not fingerprints.check(node.id, node.kind, fingerprint)[0]:
        return None
    # Readers must really have them: a `current` that is gone or does not open is published
    # again from the warehouse, never reported as unchanged.
    published_health = getattr(scope.target, "published_health", None)
    damage = published_health() if published_health else None
    if damage is not None:
        logger.warning(f"{damage.message()}: publishing the marts again")
        return None

    def settle(report: NodeReport) -> None:
        scope.ledger.write(Fingerprints(scope.run_id, {node.id: (fingerprint, None)}))
        report.status = "unchanged"
        report.detail = {"unchanged": True}
        logger.info("nothing new to publish: readers keep the current snapshot")

    return settle


PUBLISH = NodeKind(
    build=build, run=run, needs_project=True, up_to_date=up_to_date, stage=Stage.PUBLISH
)
