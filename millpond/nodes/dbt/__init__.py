"""The dbt node kind: one node per model, seed or snapshot, its tests run right after it.

The graph part translates the manifest (millpond.nodes.dbt.graph.DbtTranslator; the manifest
is reused without a parse while the project is unchanged). A node whose fingerprint
(millpond.nodes.dbt.fingerprint) equals the published run's is `unchanged` and not built. Under
the Prefect flow (`scope.batch`) the ready nodes share one dbt build (millpond.nodes.dbt.wave)
and each node records its own outcome from dbt's events; alone (a `run-node` under Airflow, a
retry, a node dbt skipped in a wave) a node is built by its own `dbt build` of the model and its
tests. Either way the node records the same things: rows of the relation it built, its tests,
its fingerprint.
"""

from __future__ import annotations

from typing import Any

from millpond.core.graph import Node, providers
from millpond.core.logs import logger
from millpond.core.registry import BuildScope, NodeKind, NodeReport, NodeScope, Settle, Stage
from millpond.metadata import reads
from millpond.metadata.records import DataTestResults, Fingerprints, RowCounts
from millpond.nodes.dbt.fingerprint import DbtFingerprints
from millpond.nodes.dbt.graph import DBT_KIND, DbtParams, DbtTranslator
from millpond.nodes.dbt.runner import DbtBuild, DbtProject
from millpond.nodes.dbt.wave import Waves
from millpond.nodes.fingerprints import run_fingerprints


class DbtNodeFailed(Exception):
    """A dbt node whose build or tests failed; `retryable` only for dbt errors (a failing
    data test fails the same way again)."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def project(scope: BuildScope) -> DbtProject:
    """The run's dbt project, created (and its profile written) once."""
    return scope.resource("dbt", lambda: DbtProject(scope.config, scope.target))


def build(scope: BuildScope, nodes: list[Node]) -> list[Node]:
    manifest = project(scope).graph_manifest()
    return DbtTranslator(scope.config, manifest, providers(nodes)).nodes()


def _fingerprints(scope: NodeScope) -> DbtFingerprints:
    # Resources are created under the scope's lock: everything the factory needs from other
    # resources is fetched before, never inside it.
    dbt, graph = project(scope), scope.graph  # type: ignore[attr-defined]

    def create() -> DbtFingerprints:
        manifest = dbt.manifest_json or dbt.graph_manifest()
        seen: dict[tuple[str, str], Any] = {}

        def partitions(source: str, table: str) -> Any:
            if (source, table) not in seen:
                seen[(source, table)] = reads.loaded_partitions(scope.ledger, source, table)
            return seen[(source, table)]

        context = {
            "vars": scope.config.dbt.vars,
            "target": scope.config.target_name,
            "output": what_a_build_reads(scope.target.dbt_output()),
        }
        return DbtFingerprints(manifest, graph, partitions, context)

    return scope.resource("dbt.fingerprints", create)


# Keys of a target's dbt output that say how a build runs, not what it builds: a run with
# another memory limit or thread count must not rebuild every model.
HOW_A_BUILD_RUNS = ("threads", "settings")


def what_a_build_reads(output: dict[str, Any]) -> dict[str, Any]:
    """The part of the target's dbt output that a model's fingerprint covers."""
    return {k: v for k, v in output.items() if k not in HOW_A_BUILD_RUNS}


def decide(scope: NodeScope, node: Node) -> tuple[str | None, bool, int | None]:
    """The node's fingerprint, whether it is unchanged, and the rows it had then."""
    fingerprint = _fingerprints(scope).of(node)
    unchanged, rows = run_fingerprints(scope).check(node.id, DBT_KIND, fingerprint)
    return fingerprint, unchanged, rows


def _waves(scope: NodeScope) -> Waves:
    dbt, _ = project(scope), scope.graph  # type: ignore[attr-defined]

    def create() -> Waves:
        return Waves(scope, dbt, lambda node: decide(scope, node))

    return scope.resource("dbt.waves", create)


def run(scope: NodeScope, node: Node, report: NodeReport) -> None:
    params: DbtParams = node.params
    full_refresh = bool(getattr(scope, "full_refresh", False))
    if getattr(scope, "batch", False) and report.attempt == 1:
        settled = _waves(scope).settle(node)
        fingerprint = settled.fingerprint
        if settled.unchanged:
            return _unchanged(scope, node, report, fingerprint, settled.rows)
        if settled.build is not None:
            return _record(scope, node, report, settled.build, settled.rows, fingerprint)
        logger.info("dbt skipped it in the shared build; building it alone")
    else:
        fingerprint, unchanged, rows = decide(scope, node)
        if unchanged:
            return _unchanged(scope, node, report, fingerprint, rows)
    target = scope.target
    rows = None
    with target.writer_lock():
        result = project(scope).build(list(params.select), full_refresh)
        if result.success and params.relation and params.resource_type != "test":
            rows = target.row_count(params.relation)
    _record(scope, node, report, result, rows, fingerprint)


def _unchanged(
    scope: NodeScope, node: Node, report: NodeReport, fingerprint: str | None, rows: int | None
) -> None:
    params: DbtParams = node.params
    report.status = "unchanged"
    report.rows = rows
    if rows is not None and params.relation and params.resource_type != "test":
        scope.ledger.write(RowCounts(scope.run_id, {params.relation: rows}))
    scope.ledger.write(Fingerprints(scope.run_id, {node.id: (fingerprint, rows)}))
    report.detail = {"unchanged": True}
    logger.info("unchanged since the published run: not rebuilt, tests not rerun")


def _record(
    scope: NodeScope,
    node: Node,
    report: NodeReport,
    result: DbtBuild,
    rows: int | None,
    fingerprint: str | None,
) -> None:
    """The ledger records of a built node, the same whether it was built alone or in a wave."""
    params: DbtParams = node.params
    if result.success and params.relation and params.resource_type != "test":
        report.rows = rows
        if rows is not None:
            scope.ledger.write(RowCounts(scope.run_id, {params.relation: rows}))
    tests = [
        {"test": t.name, "status": t.status, "failures": t.failures, "message": t.message}
        for t in result.tests
    ]
    if tests:
        scope.ledger.write(DataTestResults(scope.run_id, node.id, tests))
    report.detail = {"tests": tests}
    # A failed node leaves its relation in a state no fingerprint describes: rebuild it next.
    kept = (fingerprint, report.rows) if result.success else (None, None)
    scope.ledger.write(Fingerprints(scope.run_id, {node.id: kept}))
    if not result.success:
        raise DbtNodeFailed(result.failure_message(), retryable=result.error is not None)


def up_to_date(scope: NodeScope, node: Node) -> Settle | None:
    """Nothing to rebuild: the node's fingerprint is the published run's."""
    fingerprint, unchanged, rows = decide(scope, node)
    if not unchanged:
        return None
    return lambda report: _unchanged(scope, node, report, fingerprint, rows)


DBT = NodeKind(
    build=build, run=run, needs_project=True, up_to_date=up_to_date, stage=Stage.TRANSFORM
)
