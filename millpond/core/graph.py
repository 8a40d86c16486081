"""The one task graph, rendered by every orchestrator; it names no node kind.

Node ids are stable strings (`extract.erp.orders`, `dbt.fct_orders`, `publish`) because they are
the contract between the Prefect flow, the generated Airflow DAG, `millpond run-node` and the
ledger. Each registered node kind contributes its nodes (see millpond.core.registry.NodeKind);
the graph only orders them, checks the edges and renders them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypedDict

from millpond.core.config import NodePolicy
from millpond.core.registry import NODE_KINDS, BuildScope


class GraphError(Exception):
    """The graph cannot be built (a cycle, an unknown dependency)."""


@dataclass(frozen=True)
class Node:
    """One unit of work: what it runs, what it waits for, how it is retried."""

    id: str
    kind: str
    upstream: tuple[str, ...] = ()
    retries: int = 0
    retry_delay_seconds: float = 5.0
    timeout_seconds: float = 3600.0
    # The kind's own typed parameters (a frozen dataclass of the kind's module).
    params: Any = None
    # What this node makes available to later kinds, e.g. `relation:raw.erp__orders`.
    provides: tuple[str, ...] = ()
    # Ids of nodes built before this one that must wait for it: `build_graph` adds this node
    # to their upstream (a node placed by the user `before: [dbt]`, and publish).
    before: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        params = self.params
        # a dataclass instance (not a dataclass class) becomes a plain dict
        if dataclasses.is_dataclass(params) and not isinstance(params, type):
            params = dataclasses.asdict(params)
        return {
            "id": self.id,
            "kind": self.kind,
            "upstream": list(self.upstream),
            "retries": self.retries,
            "retry_delay_seconds": self.retry_delay_seconds,
            "timeout_seconds": self.timeout_seconds,
            "params": params,
            "provides": list(self.provides),
        }


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

    def ancestors(self, node_ids: Iterable[str]) -> set[str]:
        """Every node these (transitively) wait for, not counting themselves."""
        by_id = self.by_id
        seen: set[str] = set()
        stack = [self.node(i).id for i in node_ids]
        while stack:
            for up in by_id[stack.pop()].upstream:
                if up not in seen:
                    seen.add(up)
                    stack.append(up)
        return seen

    def subgraph(self, node_ids: Iterable[str]) -> Graph:
        """Only these nodes, in the same order, with the edges among them.

        A path through a dropped node becomes a direct edge (a -> dropped -> b keeps a -> b),
        so a part of the graph still runs in the order the whole graph would: a dbt model two
        levels below another never starts first because the model between them was left out.
        """
        keep = {self.node(i).id for i in node_ids}
        by_id = self.by_id
        nearest: dict[str, frozenset[str]] = {}  # per node: the kept nodes it waits for

        def kept_upstream(node_id: str) -> frozenset[str]:
            if node_id not in nearest:
                found: set[str] = set()
                for up in by_id[node_id].upstream:
                    found |= {up} if up in keep else kept_upstream(up)
                nearest[node_id] = frozenset(found)
            return nearest[node_id]

        # Topological order: every node's upstream is resolved before it, so no deep recursion.
        for n in self.nodes:
            kept_upstream(n.id)
        return Graph(
            tuple(
                dataclasses.replace(n, upstream=tuple(sorted(nearest[n.id])))
                for n in self.nodes
                if n.id in keep
            )
        )

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
    """Kahn's algorithm, ties broken by (the kind's place in NODE_KINDS, id) so renderings
    are stable."""
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
    ready = sorted((i for i, d in indegree.items() if d == 0), key=lambda i: _rank(pending[i]))
    result: list[Node] = []
    while ready:
        current = ready.pop(0)
        result.append(pending[current])
        for child in children.get(current, []):
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
        ready.sort(key=lambda i: _rank(pending[i]))
    if len(result) != len(pending):
        stuck = sorted(set(pending) - {n.id for n in result})
        raise GraphError(f"dependency cycle among: {', '.join(stuck)}")
    return tuple(result)


def _rank(node: Node) -> tuple[int, str]:
    return (NODE_KINDS.rank(node.kind), node.id)


class PolicyArgs(TypedDict):
    """Node's keyword arguments that a NodePolicy sets."""

    retries: int
    retry_delay_seconds: float
    timeout_seconds: float


def policy(policy: NodePolicy) -> PolicyArgs:
    """A NodePolicy as Node keyword arguments."""
    return {
        "retries": policy.retries,
        "retry_delay_seconds": policy.retry_delay_seconds,
        "timeout_seconds": policy.timeout_seconds,
    }


def sinks(nodes: Iterable[Node]) -> tuple[str, ...]:
    """Ids of the nodes nothing waits for."""
    nodes = list(nodes)
    has_children = {up for n in nodes for up in n.upstream}
    return tuple(sorted(n.id for n in nodes if n.id not in has_children))


def providers(nodes: Iterable[Node]) -> dict[str, str]:
    """What each node makes available to later kinds (e.g. `relation:raw.erp__orders` by a
    load node), so a kind wires itself to others without knowing their names."""
    return {p: n.id for n in nodes for p in n.provides}


def build_graph(scope: BuildScope, with_project: bool = True) -> Graph:
    """The graph: every registered node kind adds its nodes, stage by stage (registration
    order within a stage), so a kind sees the nodes of the stages before it.

    `with_project=False` builds only the kinds that need no dbt parse (what a single extract
    or load node under Airflow needs to start fast)."""
    nodes: list[Node] = []
    for _, kind in NODE_KINDS.items():
        if with_project or not kind.needs_project:
            nodes += kind.build(scope, list(nodes))
    if not nodes and with_project:
        # An empty graph would run, publish nothing and be green: say what is missing.
        raise GraphError(
            "nothing to run: millpond.yml has no sources and no dbt section; add sources (an "
            "ingest-only project lands, loads and publishes them) or `dbt: {project_dir: "
            "transform}` (see docs/configuration.md)"
        )
    return Graph(topological(with_before_edges(nodes)))


def with_before_edges(nodes: list[Node]) -> list[Node]:
    """The nodes with every `before` turned into an upstream edge of the node it names."""
    waits: dict[str, list[str]] = {}
    for n in nodes:
        for later in n.before:
            waits.setdefault(later, []).append(n.id)
    unknown = sorted(set(waits) - {n.id for n in nodes})
    if unknown:
        raise GraphError(f"node {waits[unknown[0]][0]!r} comes before unknown node {unknown[0]!r}")
    return [
        dataclasses.replace(
            n, upstream=tuple(dict.fromkeys((*n.upstream, *waits[n.id]))), before=()
        )
        if n.id in waits
        else dataclasses.replace(n, before=())
        if n.before
        else n
        for n in nodes
    ]
