"""`--select` / `--exclude`: the part of the graph a run builds, in dbt's selector syntax.

What runs:
- the dbt nodes dbt itself selects (`dbt ls`, so `+model`, `model+`, `tag:`, `path:`,
  `source:`, unions of several values and `a,b` intersections mean what they mean to dbt),
  minus those it selects for `--exclude`; a test selected by name runs in the node that owns it;
- a value that is a node id of `millpond graph` (`load.erp.orders`, `dbt.fct_orders`; `*`
  patterns too, e.g. `extract.erp.*`) selects or excludes that node directly;
- every node that is not a dbt node and that a kept node waits for: a selected model's source
  tables are extracted and loaded first, so it is built from fresh data; unrelated extracts do
  not run. Upstream dbt models that are not selected are not rebuilt (as in dbt);
- `publish` only when the part kept rebuilds every publishable model of the published schemas
  (readers never get a snapshot where some marts are new and others are left from an older
  run); otherwise readers keep the current snapshot and the run says why.
Without `--select`, everything runs except what `--exclude` names (and what publish needs).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from millpond.core.graph import Graph, Node
from millpond.core.registry import BuildScope
from millpond.nodes.dbt import DBT_KIND
from millpond.nodes.dbt import project as dbt_project
from millpond.nodes.dbt.select import SelectionError, selected_nodes
from millpond.nodes.publish import PUBLISH_NODE, PUBLISHABLE, PublishParams


@dataclass(frozen=True)
class Selection:
    """The graph a run builds, and why publish was left out of it (None: it was not)."""

    graph: Graph
    publish_note: str | None = None


def split_values(values: Iterable[str]) -> list[str]:
    """`--select "a b" --select c` is three values, as `dbt --select a b c` is."""
    return [part for value in values for part in value.split()]


def select_graph(
    scope: BuildScope, whole: Graph, select: Iterable[str], exclude: Iterable[str]
) -> Selection:
    """The part of `whole` that `--select` / `--exclude` keep (see the module docstring)."""
    select, exclude = split_values(select), split_values(exclude)
    if not select and not exclude:
        return Selection(whole)
    direct_sel, dbt_sel = _partition(whole, select)
    direct_excl, dbt_excl = _partition(whole, exclude)
    if PUBLISH_NODE in direct_sel:
        raise SelectionError(
            "publish cannot be selected: it runs by itself when the selection rebuilds every "
            "publishable model (or leave out --select)"
        )
    if (dbt_sel or dbt_excl) and not scope.config.has_dbt:
        raise SelectionError(
            f"{', '.join(dbt_sel + dbt_excl)}: no node of `millpond graph` has this id, and "
            "the project has no dbt section to select models from (select node ids, e.g. "
            "load.erp.orders or 'extract.erp.*')"
        )
    is_dbt = {n.id for n in whole.nodes if n.kind == DBT_KIND}
    publish_nodes = {n.id for n in whole.nodes if isinstance(n.params, PublishParams)}
    if dbt_sel:
        roots = selected_nodes(dbt_project(scope), whole, dbt_sel, with_tests=True)
    else:
        roots = set() if select else set(is_dbt)
    # Excluding a source stops its loading; excluding a model drops the model only.
    excluded = set(direct_excl)
    if dbt_excl:
        excluded |= selected_nodes(dbt_project(scope), whole, dbt_excl, with_tests=False)
    roots = (roots | direct_sel) - excluded
    if not select:  # source tables no dbt model reads still land, as in a whole run
        roots |= {
            n.id
            for n in whole.nodes
            if n.id not in is_dbt | publish_nodes | excluded and not whole.downstream(n.id) & is_dbt
        }
    chosen = roots | _feeding(whole, roots, excluded - is_dbt, is_dbt)
    chosen -= publish_nodes
    if not chosen:
        raise SelectionError(
            f"the selection (--select {' '.join(select) or '-'}, --exclude "
            f"{' '.join(exclude) or '-'}) leaves no node to run"
        )
    note = None
    for node in whole.nodes:
        if node.id not in publish_nodes:
            continue
        note = _publish_note(whole, node, chosen, excluded=node.id in direct_excl)
        if note is None:
            chosen.add(node.id)
    return Selection(whole.subgraph(chosen), note)


def _partition(whole: Graph, values: list[str]) -> tuple[set[str], list[str]]:
    """Values naming millpond node ids (exactly or as a `*` pattern), and the rest (dbt's)."""
    ids = [n.id for n in whole.nodes]
    direct: set[str] = set()
    rest: list[str] = []
    for value in values:
        matched = [i for i in ids if fnmatch.fnmatchcase(i, value)] if "." in value else []
        if value in ids:
            matched = [value]
        if matched and not any(c in value for c in ":+@,"):
            direct |= set(matched)
        else:
            rest.append(value)
    return direct, rest


def _feeding(whole: Graph, roots: set[str], excluded: set[str], is_dbt: set[str]) -> set[str]:
    """The nodes other than dbt nodes that the roots wait for, also through dbt nodes left
    out (a selected mart reads its sources through staging views), except the excluded ones
    and what only they wait for."""
    by_id = whole.by_id
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        for up in by_id[stack.pop()].upstream:
            if up not in seen and up not in excluded:
                seen.add(up)
                stack.append(up)
    return seen - is_dbt


def _publish_note(whole: Graph, publish: Node, chosen: set[str], excluded: bool) -> str | None:
    """Why publish stays out of this run, or None when every publishable model is rebuilt."""
    if excluded:
        return "publish excluded: readers keep the current snapshot"
    schemas = publish.params.schemas
    wanted = {f"{PUBLISHABLE}{s}" for s in schemas}
    makers = {n.id for n in whole.nodes if wanted & set(n.provides)}
    built = makers & chosen
    if makers and built == makers:
        return None
    if not built:
        return "publish not selected: no publishable model is rebuilt by this selection"
    return (
        f"publish left out: the selection rebuilds {len(built)} of {len(makers)} publishable "
        f"models of {', '.join(schemas)}; readers keep the current snapshot (select them all, "
        "or run without --select, to publish)"
    )
