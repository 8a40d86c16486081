"""The one task graph: built from millpond.yml and the dbt manifest, rendered by every orchestrator.

Node ids are stable strings (`extract.erp.orders`, `load.erp.orders`, `dbt.fct_orders`,
`publish`) because they are the contract between the Prefect flow, the generated Airflow DAG,
`millpond run-node` and the ledger. Building the graph needs only the manifest JSON, never dbt
itself, so rendering (e.g. the Airflow DAG) stays fast and dependency-free.

dbt tests are not nodes of their own: each runs inside the node of the model it belongs to,
right after that model, so a failing test stops the model's children. A test over several
models (e.g. `relationships`) belongs to the parent built last, and the other parents become
upstream of that node, so the test never runs before the tables it compares exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from millpond.config import MillpondConfig, NodePolicy

NodeKind = Literal["extract", "load", "dbt", "publish"]
EXECUTABLE_DBT = {"model", "seed", "snapshot"}
PUBLISH = "publish"


class GraphError(Exception):
    """The graph cannot be built (a cycle, an unknown dependency)."""


@dataclass(frozen=True)
class Node:
    """One unit of work: what it runs, what it waits for, how it is retried."""

    id: str
    kind: NodeKind
    upstream: tuple[str, ...] = ()
    retries: int = 0
    retry_delay_seconds: float = 5.0
    timeout_seconds: float = 3600.0
    # Kind-specific: source/table for extract and load; resource/select/relation for dbt.
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["upstream"] = list(self.upstream)
        return data


@dataclass(frozen=True)
class Graph:
    """Nodes in a deterministic topological order (upstream before downstream)."""

    nodes: tuple[Node, ...]

    def __post_init__(self) -> None:
        ids = [n.id for n in self.nodes]
        if len(ids) != len(set(ids)):
            raise GraphError("duplicate node ids")

    @property
    def by_id(self) -> dict[str, Node]:
        return {n.id: n for n in self.nodes}

    def node(self, node_id: str) -> Node:
        try:
            return self.by_id[node_id]
        except KeyError:
            raise GraphError(f"unknown node {node_id!r}; see `millpond graph`") from None

    def edges(self) -> list[tuple[str, str]]:
        return [(up, n.id) for n in self.nodes for up in n.upstream]

    def downstream(self, node_id: str) -> set[str]:
        """Every node that (transitively) waits for this one."""
        children: dict[str, list[str]] = {}
        for up, down in self.edges():
            children.setdefault(up, []).append(down)
        seen: set[str] = set()
        stack = [node_id]
        while stack:
            for child in children.get(stack.pop(), []):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        return seen

    def to_json(self) -> str:
        return json.dumps({"nodes": [n.to_dict() for n in self.nodes]}, indent=2)

    def to_mermaid(self) -> str:
        lines = ["flowchart LR"]
        alias = {n.id: f"n{i}" for i, n in enumerate(self.nodes)}
        for n in self.nodes:
            lines.append(f'  {alias[n.id]}["{n.id}"]')
        for up, down in self.edges():
            lines.append(f"  {alias[up]} --> {alias[down]}")
        return "\n".join(lines)

    def to_text(self) -> str:
        width = max((len(n.id) for n in self.nodes), default=0)
        lines = []
        for n in self.nodes:
            after = ", ".join(n.upstream) if n.upstream else "-"
            lines.append(f"{n.id:<{width}}  [{n.kind}]  after: {after}")
        return "\n".join(lines)


def topological(nodes: Iterable[Node]) -> tuple[Node, ...]:
    """Kahn's algorithm, ties broken by (kind order, id) so renderings are stable."""
    order = {"extract": 0, "load": 1, "dbt": 2, "publish": 3}
    pending = {n.id: n for n in nodes}
    for n in pending.values():
        for up in n.upstream:
            if up not in pending:
                raise GraphError(f"node {n.id!r} depends on unknown node {up!r}")
    indegree = {i: len(set(n.upstream)) for i, n in pending.items()}
    children: dict[str, list[str]] = {}
    for n in pending.values():
        for up in set(n.upstream):
            children.setdefault(up, []).append(n.id)
    ready = sorted(
        (i for i, d in indegree.items() if d == 0), key=lambda i: _rank(pending[i], order)
    )
    result: list[Node] = []
    while ready:
        current = ready.pop(0)
        result.append(pending[current])
        for child in children.get(current, []):
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
        ready.sort(key=lambda i: _rank(pending[i], order))
    if len(result) != len(pending):
        stuck = sorted(set(pending) - {n.id for n in result})
        raise GraphError(f"dependency cycle among: {', '.join(stuck)}")
    return tuple(result)


def _rank(node: Node, order: dict[str, int]) -> tuple[int, str]:
    return (order[node.kind], node.id)


def _policy(policy: NodePolicy) -> dict[str, float | int]:
    return {
        "retries": policy.retries,
        "retry_delay_seconds": policy.retry_delay_seconds,
        "timeout_seconds": policy.timeout_seconds,
    }


def source_nodes(config: MillpondConfig) -> list[Node]:
    """extract and load nodes, one pair per configured source table."""
    nodes: list[Node] = []
    for source_name, source in sorted(config.sources.items()):
        for table in sorted(source.tables):
            params = {"source": source_name, "table": table}
            extract_id = f"extract.{source_name}.{table}"
            nodes.append(Node(extract_id, "extract", (), params=params, **_policy(source.extract)))
            nodes.append(
                Node(
                    f"load.{source_name}.{table}",
                    "load",
                    (extract_id,),
                    params=params,
                    **_policy(source.load),
                )
            )
    return nodes


def dbt_nodes(config: MillpondConfig, manifest: dict[str, Any]) -> list[Node]:
    """One node per executable dbt resource (model, seed, snapshot) with its tests attached."""
    resources = manifest.get("nodes", {})
    sources = manifest.get("sources", {})
    executable = {
        uid: r
        for uid, r in resources.items()
        if r["resource_type"] in EXECUTABLE_DBT
        and r.get("config", {}).get("materialized") != "ephemeral"
    }
    configured = {(s, t) for s, src in config.sources.items() for t in src.tables}

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
                src = sources[dep]
                if (src["source_name"], src["name"]) in configured:
                    ups.add(f"load.{src['source_name']}.{src['name']}")
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
                    params={"unique_id": uid, "resource_type": "test", "select": [r["name"]]},
                    **_policy(config.dbt.policy),
                )
            )
            continue
        tests[owner].append(r["name"])
        upstream[owner] |= {u for u in upstream_of(uid) if u.startswith("load.")}  # its sources
        for other in model_parents - {owner} - ancestors(owner):
            upstream[owner].add(f"dbt.{executable[other]['name']}")

    nodes = [
        Node(
            f"dbt.{r['name']}",
            "dbt",
            tuple(sorted(upstream[uid])),
            params={
                "unique_id": uid,
                "resource_type": r["resource_type"],
                "select": [r["name"], *sorted(tests[uid])],
                "tests": sorted(tests[uid]),
                "relation": _relation(r),
                "schema": r.get("schema"),
            },
            **_policy(config.dbt.policy),
        )
        for uid, r in executable.items()
    ]
    return nodes + standalone


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
    """schema.name of a built dbt resource (the database part is the DuckDB file itself)."""
    return f"{resource.get('schema')}.{resource.get('alias') or resource['name']}"


def build_graph(config: MillpondConfig, manifest: dict[str, Any] | None) -> Graph:
    """The full graph: sources, dbt resources and publish after everything else."""
    nodes = source_nodes(config)
    if manifest is not None:
        nodes += dbt_nodes(config, manifest)
    has_children = {up for n in nodes for up in n.upstream}
    sinks = tuple(sorted(n.id for n in nodes if n.id not in has_children))
    nodes.append(Node(PUBLISH, "publish", sinks, retries=1))
    return Graph(topological(nodes))
