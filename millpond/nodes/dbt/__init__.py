"""The dbt node kind: one node per model, seed or snapshot, its tests run right after it.

The graph part reads the parsed manifest (millpond.nodes.dbt.graph); the run part builds the
node's selection through dbtRunner in-process (millpond.nodes.dbt.runner) under the target's
writer lock, then counts the rows of the relation it built.
"""

from __future__ import annotations

from millpond.core.graph import Node, providers
from millpond.core.registry import BuildScope, NodeKind, NodeReport, NodeScope
from millpond.nodes.dbt.graph import DbtParams, dbt_nodes
from millpond.nodes.dbt.runner import DbtProject


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
    manifest = project(scope).parse()
    return dbt_nodes(scope.config, manifest, providers(nodes))


def run(scope: NodeScope, node: Node, report: NodeReport) -> None:
    params: DbtParams = node.params
    target = scope.target
    with target.writer_lock():
        full_refresh = bool(getattr(scope, "full_refresh", False))
        result = project(scope).build(list(params.select), full_refresh=full_refresh)
        if result.success and params.relation and params.resource_type != "test":
            report.rows = target.row_count(params.relation)
            scope.ledger.record_row_counts(scope.run_id, {params.relation: report.rows})
    tests = [
        {"test": t.name, "status": t.status, "failures": t.failures, "message": t.message}
        for t in result.tests
    ]
    if tests:
        scope.ledger.record_test_results(scope.run_id, node.id, tests)
    report.detail = {"tests": tests}
    if not result.success:
        raise DbtNodeFailed(result.failure_message(), retryable=result.error is not None)


DBT = NodeKind(build=build, run=run, needs_project=True)
