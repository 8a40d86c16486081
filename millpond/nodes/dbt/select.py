"""dbt's node selection (`--select`, `--exclude`) resolved by dbt itself.

`dbt ls` over the already parsed manifest answers which resources a selection names, so
`+model`, `model+`, `tag:`, `path:`, `source:`, `@model`, unions (several values) and
intersections (`a,b`) mean exactly what they mean to dbt, with no second implementation of its
selector grammar here. It reads only the manifest: the warehouse is not opened.
"""

from __future__ import annotations

import json
from typing import Any

from millpond.core.graph import Graph, providers
from millpond.nodes.dbt.graph import DbtParams, source_provider
from millpond.nodes.dbt.runner import DbtProject


class SelectionError(Exception):
    """A selection dbt refused, or one that names nothing; exits 2 like other bad input."""


def dbt_list(project: DbtProject, select: list[str]) -> set[str]:
    """The unique ids of every resource (models, seeds, snapshots, tests, sources) that
    `dbt ls --select ...` lists (tests only when selected themselves: a test of a selected
    model is not a reason to run the model its other parent is). A value that matches nothing is
    an error, so a typo never silently runs something else (dbt itself only warns)."""
    unmatched: list[str] = []

    def on_event(event: Any) -> None:
        if event.info.name == "NoNodesForSelectionCriteria":
            unmatched.append(str(getattr(event.data, "spec_raw", "") or "?"))

    args = ["--output", "json", "--output-keys", "unique_id"]
    args += ["--indirect-selection", "empty", "--select", *select]
    result = project.invoke(
        ["ls"], args, callbacks=[on_event], global_flags=("--quiet", "--log-level", "none")
    )
    if not result.success:
        raise SelectionError(f"dbt cannot resolve the selection: {result.exception}")
    if unmatched:
        names = ", ".join(repr(u) for u in dict.fromkeys(unmatched))
        raise SelectionError(
            f"{names} matches nothing in the dbt project {project.project_dir} "
            "(see `dbt ls`, or `millpond graph` for node ids)"
        )
    return {json.loads(line)["unique_id"] for line in result.result or []}


def selected_nodes(
    project: DbtProject, graph: Graph, values: list[str], with_tests: bool = True
) -> set[str]:
    """The ids of the graph nodes that run what `--select values` names in dbt: a model's,
    seed's or snapshot's own node, the node that loads a source, and (`with_tests`) the node
    a selected test runs in. For `--exclude` tests are left out: a test runs inside its
    model's node, and excluding the test must not drop the model."""
    unique_ids = dbt_list(project, values)
    manifest = project.manifest
    by_uid: dict[str, str] = {}
    by_test: dict[str, str] = {}
    for node in graph.nodes:
        params = node.params
        if isinstance(params, DbtParams):
            by_uid[params.unique_id] = node.id
            for test in params.tests:
                by_test[test] = node.id
    provided = providers(graph.nodes)
    found: set[str] = set()
    for uid in unique_ids:
        if uid in by_uid:
            found.add(by_uid[uid])
        elif with_tests and uid in manifest.nodes and manifest.nodes[uid].resource_type == "test":
            owner = by_test.get(manifest.nodes[uid].name)
            if owner:
                found.add(owner)
        elif with_tests and uid in manifest.unit_tests:  # runs in its model's node
            owner = by_test.get(manifest.unit_tests[uid].name)
            if owner:
                found.add(owner)
        elif uid in manifest.sources:
            provider = source_provider(manifest.sources[uid].to_dict(), provided)
            if provider:
                found.add(provider)
    return found
