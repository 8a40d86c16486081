"""dbt's manifest as graph nodes: one node per model, seed or snapshot, its tests inside it.

Building the graph needs only the manifest JSON, never dbt itself. dbt tests are not nodes of
their own: each runs inside the node of the model it belongs to, right after that model, so a
failing test stops the model's children. A test over several models (e.g. `relationships`)
belongs to the parent built last, and the other parents become upstream of that node, so the
test never runs before the tables it compares exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from millpond.core.config import MillpondConfig
from millpond.core.graph import GraphError, Node, policy

EXECUTABLE_DBT = {"model", "seed", "snapshot"}


@dataclass(frozen=True)
class DbtParams:
    """The typed parameters of a dbt node: what `dbt build --select` gets, and the relation
    it builds (counted after a successful build)."""

    unique_id: str
    resource_type: str
    select: tuple[str, ...]
    tests: tuple[str, ...] = ()
    relation: str | None = None
    schema: str | None = None


def dbt_nodes(  # noqa: C901 (issue 24 splits it into a translator class)
    config: MillpondConfig, manifest: dict[str, Any], provided: dict[str, str]
) -> list[Node]:
    """One node per executable dbt resource (model, seed, snapshot) with its tests attached;
    `provided` maps `source:<source>.<table>` to the node that makes the dbt source ready."""
    resources = manifest.get("nodes", {})
    sources = manifest.get("sources", {})
    executable = {
        uid: r
        for uid, r in resources.items()
        if r["resource_type"] in EXECUTABLE_DBT
        and r.get("config", {}).get("materialized") != "ephemeral"
    }

    def parents(uid: str, seen: set[str] | None = None) -> set[str]:
        """Executable dbt parents and source uids, looking through ephemeral models."""
        seen = seen if seen is not None else set()
        found: set[str] = set()
        for dep in resources.get(uid, {}).get("depends_on", {}).get("nodes", []):
            if dep in seen:
                continue
            seen.add(dep)
            if dep in executable or dep in sources:
                found.add(dep)
            elif dep in resources:  # ephemeral model: inherit its parents
                found |= parents(dep, seen)
        return found

    def upstream_of(uid: str) -> set[str]:
        ups: set[str] = set()
        for dep in parents(uid):
            if dep in executable:
                ups.add(f"dbt.{executable[dep]['name']}")
            else:
                provider = _provider(sources[dep], provided)
                if provider:
                    ups.add(provider)
        return ups

    upstream = {uid: upstream_of(uid) for uid in executable}
    by_name = {f"dbt.{r['name']}": uid for uid, r in executable.items()}

    def ancestors(uid: str) -> set[str]:
        seen: set[str] = set()
        stack = [uid]
        while stack:
            for up in upstream[stack.pop()]:
                if up in by_name and by_name[up] not in seen:
                    seen.add(by_name[up])
                    stack.append(by_name[up])
        return seen

    tests: dict[str, list[str]] = {uid: [] for uid in executable}
    standalone: list[Node] = []
    for uid, r in sorted(resources.items()):
        if r["resource_type"] != "test":
            continue
        found = parents(uid)
        model_parents = {p for p in found if p in executable}
        owner = _test_owner(r.get("attached_node"), model_parents, ancestors)
        if owner is None and found:
            # A test of sources only runs with the first model that reads all those sources.
            readers = sorted(m for m in executable if found <= parents(m))
            owner = readers[0] if readers else None
        if owner is None:
            standalone.append(
                Node(
                    f"dbt.{r['name']}",
                    "dbt",
                    tuple(sorted(upstream_of(uid))),
                    params=DbtParams(uid, "test", (r["name"],)),
                    **policy(config.dbt.policy),
                )
            )
            continue
        tests[owner].append(r["name"])
        upstream[owner] |= {u for u in upstream_of(uid) if u not in by_name}  # its sources
        for other in model_parents - {owner} - ancestors(owner):
            upstream[owner].add(f"dbt.{executable[other]['name']}")

    nodes = [
        Node(
            f"dbt.{r['name']}",
            "dbt",
            tuple(sorted(upstream[uid])),
            params=DbtParams(
                uid,
                r["resource_type"],
                (r["name"], *sorted(tests[uid])),
                tuple(sorted(tests[uid])),
                _relation(r),
                r.get("schema"),
            ),
            provides=_publishable(r),
            **policy(config.dbt.policy),
        )
        for uid, r in executable.items()
    ]
    return nodes + standalone


def _provider(source: dict[str, Any], provided: dict[str, str]) -> str | None:
    """The node that makes a dbt source ready: by name (a dbt source named after millpond's
    source and table), else by the relation it reads (`raw.<source>__<table>`, or its
    `__latest` view), so a project with its own source names still waits for its loads."""
    by_name = provided.get(f"source:{source['source_name']}.{source['name']}")
    if by_name:
        return by_name
    identifier = source.get("identifier") or source["name"]
    relation = f"relation:{source.get('schema')}.{identifier}"
    return provided.get(relation) or provided.get(relation.removesuffix("__latest"))


def _publishable(resource: dict[str, Any]) -> tuple[str, ...]:
    """Table and incremental models are what readers get; views, seeds and snapshots
    history stay in the warehouse unless publish.schemas names their schema."""
    materialized = resource.get("config", {}).get("materialized")
    if resource["resource_type"] == "model" and materialized in ("table", "incremental"):
        return (f"publishable:{resource.get('schema')}",)
    return ()


def _test_owner(
    attached: str | None, model_parents: set[str], ancestors: Callable[[str], set[str]]
) -> str | None:
    """The model whose node runs a test: the one the test is declared on (dbt's
    `attached_node`) unless another parent depends on it, else a parent no other parent
    depends on. None for a test of sources only."""
    if not model_parents:
        return None
    candidates = ([attached] if attached in model_parents else []) + sorted(model_parents)
    for candidate in candidates:
        if all(candidate not in ancestors(other) for other in model_parents - {candidate}):
            return candidate
    raise GraphError(f"cannot place a test over {sorted(model_parents)}: they form a cycle")


def _relation(resource: dict[str, Any]) -> str:
    """schema.name of a built dbt resource (the database is the target's own)."""
    return f"{resource.get('schema')}.{resource.get('alias') or resource['name']}"
