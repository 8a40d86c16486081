"""dbt's manifest as graph nodes: one node per model, seed or snapshot, its tests inside it.

Building the graph needs only the manifest JSON, never dbt itself. dbt tests are not nodes of
their own: each runs inside the node of the model it belongs to, right after that model, so a
failing test stops the model's children; a unit test runs in its model's node, before the
model (dbt builds a model only after its unit tests pass). A dbt source with a freshness rule
is checked by the nodes that read it, before they build (`DbtParams.freshness`). Ephemeral
models are no nodes: they are inlined into the nodes reading them. Exposures are no nodes
either: `exposures()` names the nodes each one reads, for `millpond graph`. A test over
several models (e.g. `relationships`) belongs to the parent built last, and the other parents
become upstream of that node, so the test never runs before the tables it compares exist.

`DbtTranslator` takes each decision in a method of its own, the shape of dagster-dbt's
`DagsterDbtTranslator`: which resources become nodes, a node's id, the nodes it waits for,
which node a dbt source waits for, where a test runs, what a node provides, its parameters
and its policy. `DbtTranslator.nodes` only walks the manifest and combines the answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from millpond.core.config import MillpondConfig, NodePolicy
from millpond.core.graph import GraphError, Node
from millpond.core.graph import policy as node_policy

DBT_KIND = "dbt"  # the node kind's registered name: `Node.kind` of every dbt node
EXECUTABLE_DBT = {"model", "seed", "snapshot"}

# One resource of the manifest's `nodes` or `sources`, as manifest.json spells it.
Resource = dict[str, Any]


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
    # `source_name.table` of each dbt source with a freshness rule this node reads (through
    # ephemeral models too): checked by `dbt source freshness` before the node is built.
    freshness: tuple[str, ...] = ()


class DbtTranslator:
    """The dbt part of the graph, one decision per method, for one manifest and what the
    nodes built before offer (`provided` maps `source:<source>.<table>` and
    `relation:<schema>.<table>` to the node that makes it ready)."""

    def __init__(
        self, config: MillpondConfig, manifest: dict[str, Any], provided: dict[str, str]
    ) -> None:
        self.config = config
        self.resources: dict[str, Resource] = manifest.get("nodes", {})
        self.sources: dict[str, Resource] = manifest.get("sources", {})
        self.unit_tests: dict[str, Resource] = manifest.get("unit_tests", {})
        self.provided = provided
        self.exposure_resources: dict[str, Resource] = manifest.get("exposures", {})
        self.executable = {uid: r for uid, r in self.resources.items() if self.is_node(r)}

    # --- the decisions ------------------------------------------------------------------------

    def is_node(self, resource: Resource) -> bool:
        """Models, seeds and snapshots are nodes; an ephemeral model is inlined into the
        models reading it, and a test runs inside a node (`test_owner`)."""
        return (
            resource["resource_type"] in EXECUTABLE_DBT
            and resource.get("config", {}).get("materialized") != "ephemeral"
        )

    def node_id(self, resource: Resource) -> str:
        return f"dbt.{resource['name']}"

    def upstream_ids(self, uid: str) -> set[str]:
        """The nodes a resource waits for: the nodes of its dbt parents (through ephemeral
        models), and the node providing each dbt source it reads (a source no node provides
        adds none)."""
        upstream: set[str] = set()
        for dep in self._parents(uid):
            if dep in self.executable:
                upstream.add(self.node_id(self.executable[dep]))
            else:
                provider = self.source_provider(self.sources[dep])
                if provider:
                    upstream.add(provider)
        return upstream

    def source_provider(self, source: Resource) -> str | None:
        return source_provider(source, self.provided)

    def test_owner(self, test: str, ancestors: Callable[[str], set[str]]) -> str | None:
        """The model whose node runs a test: the one it is declared on (dbt's
        `attached_node`) unless another parent depends on it, else a parent no other parent
        depends on; a test of sources only runs with the first model reading all of them.
        None: the test is a node of its own (no model reads its sources)."""
        parents = self._parents(test)
        models = {p for p in parents if p in self.executable}
        if models:
            return _downstream_parent(self.resources[test].get("attached_node"), models, ancestors)
        if not parents:
            return None
        readers = sorted(m for m in self.executable if parents <= self._parents(m))
        return readers[0] if readers else None

    def provides(self, resource: Resource) -> tuple[str, ...]:
        """Table and incremental models are what readers get; views, seeds and snapshots
        history stay in the warehouse unless publish.schemas names their schema."""
        materialized = resource.get("config", {}).get("materialized")
        if resource["resource_type"] == "model" and materialized in ("table", "incremental"):
            return (f"publishable:{resource.get('schema')}",)
        return ()

    def relation(self, resource: Resource) -> str:
        """schema.name of a built dbt resource (the database is the target's own)."""
        return f"{resource.get('schema')}.{resource.get('alias') or resource['name']}"

    def params(self, uid: str, resource: Resource, tests: list[str]) -> DbtParams:
        """What the node selects in `dbt build`: its resource and the tests it runs."""
        if resource["resource_type"] == "test":
            return DbtParams(uid, "test", (resource["name"],))
        ordered = tuple(sorted(tests))
        checked = sorted(
            f"{self.sources[p]['source_name']}.{self.sources[p]['name']}"
            for p in self._parents(uid)
            if p in self.sources and has_freshness(self.sources[p])
        )
        return DbtParams(
            uid,
            resource["resource_type"],
            (resource["name"], *ordered),
            ordered,
            self.relation(resource),
            resource.get("schema"),
            tuple(checked),
        )

    def policy(self, resource: Resource) -> NodePolicy:
        """Retries and timeout: `dbt.policy`, the same for every dbt node."""
        return self.config.dbt_settings.policy

    def exposures(self) -> list[dict[str, Any]]:
        """The project's exposures with the nodes each reads (through ephemeral models):
        dashboards and apps are shown beside the graph (`millpond graph`), never run."""
        found = []
        for exposure in sorted(self.exposure_resources.values(), key=lambda e: e["name"]):
            upstream: set[str] = set()
            for dep in exposure.get("depends_on", {}).get("nodes", []):
                if dep in self.executable:
                    upstream.add(self.node_id(self.executable[dep]))
                elif dep in self.resources:  # an ephemeral model: the nodes it reads
                    parents = self._parents(dep) & set(self.executable)
                    upstream |= {self.node_id(self.executable[p]) for p in parents}
            owner = exposure.get("owner") or {}
            found.append(
                {
                    "name": exposure["name"],
                    "type": exposure.get("type"),
                    "owner": owner.get("name") or owner.get("email"),
                    "url": exposure.get("url"),
                    "upstream": sorted(upstream),
                }
            )
        return found

    # --- the walk -----------------------------------------------------------------------------

    def nodes(self) -> list[Node]:
        """One node per executable resource with its tests, then the tests of their own."""
        upstream = {uid: self.upstream_ids(uid) for uid in self.executable}
        by_id = {self.node_id(r): uid for uid, r in self.executable.items()}

        def ancestors(uid: str) -> set[str]:
            """The executable resources a node waits for so far (tests placed already add
            edges, so a later test sees them and never closes a cycle)."""
            seen: set[str] = set()
            stack = [uid]
            while stack:
                for up in upstream[stack.pop()]:
                    if up in by_id and by_id[up] not in seen:
                        seen.add(by_id[up])
                        stack.append(by_id[up])
            return seen

        tests: dict[str, list[str]] = {uid: [] for uid in self.executable}
        standalone: list[Node] = []
        for uid, resource in sorted(self.resources.items()):
            if resource["resource_type"] != "test":
                continue
            owner = self.test_owner(uid, ancestors)
            if owner is None:
                standalone.append(self._node(uid, resource, self.upstream_ids(uid), []))
                continue
            tests[owner].append(resource["name"])
            upstream[owner] |= {u for u in self.upstream_ids(uid) if u not in by_id}  # sources
            models = {p for p in self._parents(uid) if p in self.executable}
            for other in models - {owner} - ancestors(owner):
                upstream[owner].add(self.node_id(self.executable[other]))
        for unit_test in self.unit_tests.values():  # in its model's node, before the model
            model = next(iter(unit_test.get("depends_on", {}).get("nodes", [])), None)
            if model in tests:
                tests[model].append(unit_test["name"])
        built = [
            self._node(uid, r, upstream[uid], tests[uid]) for uid, r in self.executable.items()
        ]
        return built + standalone

    def _node(self, uid: str, resource: Resource, upstream: set[str], tests: list[str]) -> Node:
        return Node(
            self.node_id(resource),
            DBT_KIND,
            tuple(sorted(upstream)),
            params=self.params(uid, resource, tests),
            provides=self.provides(resource),
            **node_policy(self.policy(resource)),
        )

    def _parents(self, uid: str, seen: set[str] | None = None) -> set[str]:
        """Executable dbt parents and source uids, looking through ephemeral models."""
        seen = seen if seen is not None else set()
        found: set[str] = set()
        for dep in self.resources.get(uid, {}).get("depends_on", {}).get("nodes", []):
            if dep in seen:
                continue
            seen.add(dep)
            if dep in self.executable or dep in self.sources:
                found.add(dep)
            elif dep in self.resources:  # ephemeral model: inherit its parents
                found |= self._parents(dep, seen)
        return found


def has_freshness(source: Resource) -> bool:
    """A source dbt can check: a warn or error rule and a column (or query) to check it by."""
    rule = source.get("freshness") or {}
    limits = [rule.get(k) or {} for k in ("warn_after", "error_after")]
    counted = any(limit.get("count") and limit.get("period") for limit in limits)
    return counted and bool(source.get("loaded_at_field") or source.get("loaded_at_query"))


def source_provider(source: Resource, provided: dict[str, str]) -> str | None:
    """The node that makes a dbt source ready: by name (a dbt source named after millpond's
    source and table), else by the relation it reads (`raw.<source>__<table>`, or its
    `__latest` view), so a project with its own source names still waits for its loads."""
    by_name = provided.get(f"source:{source['source_name']}.{source['name']}")
    if by_name:
        return by_name
    identifier = source.get("identifier") or source["name"]
    relation = f"relation:{source.get('schema')}.{identifier}"
    return provided.get(relation) or provided.get(relation.removesuffix("__latest"))


def _downstream_parent(
    attached: str | None, models: set[str], ancestors: Callable[[str], set[str]]
) -> str:
    """Of a test's parent models, the attached one unless another depends on it, else the
    first no other parent depends on."""
    candidates = ([attached] if attached in models else []) + sorted(models)
    for candidate in candidates:
        if all(candidate not in ancestors(other) for other in models - {candidate}):
            return candidate
    raise GraphError(f"cannot place a test over {sorted(models)}: they form a cycle")
