"""The publish node kind: after everything else succeeded, expose the marts to readers.

It waits for every sink of the graph, so any failure anywhere keeps the published marts as
they were. Which schemas are published: `publish.schemas`, or else every schema that a node
marked publishable (dbt's table and incremental models).

When every node with a fingerprint was found unchanged (millpond.nodes.fingerprints), the
schemas are those of the published run and the target finds its published marts readable
(`published_health`: DuckDB's `current` resolves and opens), readers already have this run's
marts: publish is `unchanged` and `current` keeps pointing at the same snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass

from millpond.core.graph import Node, sinks
from millpond.core.logs import logger
from millpond.core.registry import BuildScope, NodeKind, NodeReport, NodeScope, Settle, Stage
from millpond.metadata.records import Fingerprints
from millpond.nodes.fingerprints import PUBLISH_KIND, digest, run_fingerprints

PUBLISH_NODE = "publish"  # the id of the one publish node
PUBLISHABLE = "publishable:"


@dataclass(frozen=True)
class PublishParams:
    schemas: tuple[str, ...]


def build(scope: BuildScope, nodes: list[Node]) -> list[Node]:
    config = scope.config
    declared = config.publish.schemas
    found = {
        p.removeprefix(PUBLISHABLE) for n in nodes for p in n.provides if p.startswith(PUBLISHABLE)
    }
    schemas = tuple(declared) if declared is not None else tuple(sorted(found))
    return [
        Node(PUBLISH_NODE, PUBLISH_KIND, sinks(nodes), retries=1, params=PublishParams(schemas))
    ]


def run(scope: NodeScope, node: Node, report: NodeReport) -> None:
    params: PublishParams = node.params
    if not params.schemas:
        raise RuntimeError(
            "nothing to publish: no table or incremental models, and publish.schemas is not set"
        )
    settle = up_to_date(scope, node)
    if settle is not None:
        return settle(report)
    published = scope.target.publish(scope.run_id, list(params.schemas), scope.config.publish.keep)
    report.rows = published.rows
    report.bytes = published.bytes
    report.detail = {"snapshot": published.location, "tables": published.tables}
    scope.ledger.write(Fingerprints(scope.run_id, {node.id: (_fingerprint(params), None)}))


def _fingerprint(params: PublishParams) -> str:
    return digest({"schemas": params.schemas})


def up_to_date(scope: NodeScope, node: Node) -> Settle | None:
    """Readers have this run's marts already: every node with a fingerprint was found
    unchanged in this run, and the schemas are those of the published run."""
    params: PublishParams = node.params
    fingerprints = run_fingerprints(scope)
    graph = getattr(scope, "graph", None)
    members = [n.id for n in graph.nodes if n.kind in fingerprints.kinds] if graph else []
    fingerprint = _fingerprint(params)
    if not fingerprints.all_unchanged(members):
        return None
    if not fingerprints.check(node.id, node.kind, fingerprint)[0]:
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
