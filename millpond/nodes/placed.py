"""What the node kinds a team configures under `nodes:` share (python, command): their common
keys and where their nodes go in the graph.

A placed node says where it goes with `after:` and `before:`, each a list of node ids or
selectors: an id (`load.erp.orders`, `dbt.stg_erp__orders`, `publish`, `python.enrich`), the
name of another placed node (`enrich`), a prefix of ids (`dbt`: every dbt node; `load.erp`:
every load of the erp source) or a glob (`dbt.stg_*`). Placed kinds build last
(`Stage.PLACED`), so they can name every node; their `before` becomes upstream edges of the
nodes named (millpond.core.graph.Node.before). A placed node that does not come after publish
comes before it, so its failure keeps the published marts as they were. Unknown names and
cycles are errors naming the `nodes.<name>.after`/`before` key.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable
from typing import Any

from pydantic import Field, field_validator

from millpond.core.config import StrictModel
from millpond.core.graph import GraphError, Node, topological, with_before_edges
from millpond.core.registry import NODE_KINDS, BuildScope, Stage


class PlacedConfigError(GraphError):
    """A placed node's settings do not fit the graph (an unknown name, a cycle, a callable
    that cannot be imported); the message names the millpond.yml key."""


class PlacedNodeConfig(StrictModel):
    """The keys every node under `nodes:` has: where it goes and how it is retried."""

    kind: str
    after: list[str] = Field(default_factory=list)
    before: list[str] = Field(default_factory=list)
    retries: int = Field(0, ge=0, le=20)
    retry_delay: float = Field(5.0, ge=0)  # seconds
    timeout: float = Field(3600.0, gt=0)  # seconds

    @field_validator("after", "before", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("after", "before")
    @classmethod
    def _not_blank(cls, value: list[str]) -> list[str]:
        if any(not name.strip() for name in value):
            raise ValueError("names a blank node; use node ids from `millpond graph`")
        return value


def placed_id(kind: str, name: str) -> str:
    """A placed node's id: its kind and its name under `nodes:` (`python.enrich`)."""
    return f"{kind}.{name}"


def build_placed(
    kind_name: str, params: Callable[[BuildScope, str, Any], Any]
) -> Callable[[BuildScope, list[Node]], list[Node]]:
    """A placed kind's `build`: its own nodes, placed among `nodes` (every other kind's) and
    the other placed nodes; `params(scope, name, config)` makes a node's typed params (and
    raises PlacedConfigError for settings that cannot work)."""

    def build(scope: BuildScope, nodes: list[Node]) -> list[Node]:
        placed = _place(scope, [n for n in nodes if not _is_placed(n.kind)])
        return [
            dataclasses.replace(
                node, params=params(scope, node.params, scope.config.nodes[node.params])
            )
            for node in placed
            if node.kind == kind_name
        ]

    return build


def _stage(kind: str) -> Stage | None:
    return NODE_KINDS.get(kind).stage if kind in NODE_KINDS else None


def _is_placed(kind: str) -> bool:
    return _stage(kind) == Stage.PLACED


def _place(scope: BuildScope, others: list[Node]) -> list[Node]:
    """Every placed node of the config (any placed kind), with its upstream and `before`
    resolved; `params` holds its name under `nodes:` for the caller."""
    configs: dict[str, Any] = dict(scope.config.nodes)
    ids = {name: placed_id(cfg.kind, name) for name, cfg in configs.items()}
    every = [n.id for n in others] + list(ids.values())
    publishers = [n.id for n in others if _stage(n.kind) == Stage.PUBLISH]
    placed: list[Node] = []
    for name, cfg in sorted(configs.items()):
        node_id = ids[name]
        after = _resolve(f"nodes.{name}.after", cfg.after, every, ids, node_id)
        before = _resolve(f"nodes.{name}.before", cfg.before, every, ids, node_id)
        placed.append(
            Node(
                node_id,
                cfg.kind,
                tuple(after),
                retries=cfg.retries,
                retry_delay_seconds=cfg.retry_delay,
                timeout_seconds=cfg.timeout,
                params=name,
                before=tuple(before),
            )
        )
    _check_acyclic(others, placed)
    # Whatever does not come after publish comes before it: a failure blocks publishing.
    ordered = {n.id: n for n in topological(with_before_edges([*others, *placed]))}
    after_publish = {p for n in publishers for p in _descendants(ordered, n)}
    return [
        n
        if n.id in after_publish or not publishers
        else dataclasses.replace(n, before=tuple(dict.fromkeys((*n.before, *publishers))))
        for n in placed
    ]


def _resolve(
    key: str, selectors: list[str], every: list[str], names: dict[str, str], me: str
) -> list[str]:
    found: list[str] = []
    for selector in selectors:
        if selector in names:
            matched = [names[selector]]
        elif selector in every:
            matched = [selector]
        elif any(c in selector for c in "*?["):
            matched = [i for i in every if fnmatch.fnmatchcase(i, selector)]
        else:
            matched = [i for i in every if i.startswith(selector + ".")]
        matched = [i for i in matched if i != me]
        if not matched:
            examples = ", ".join(_examples(every, me))
            raise PlacedConfigError(
                f"millpond.yml {key}: {selector!r} names no node of the graph (node ids or "
                f"prefixes such as {examples}; see `millpond graph`)"
            )
        found += [i for i in matched if i not in found]
    return found


def _examples(every: list[str], me: str) -> list[str]:
    """A few ids of each kind of node, for an error message."""
    seen: dict[str, str] = {}
    for node_id in every:
        if node_id != me:
            seen.setdefault(node_id.split(".", 1)[0], node_id)
    return list(seen.values())[:6]


def _check_acyclic(others: list[Node], placed: list[Node]) -> None:
    try:
        topological(with_before_edges([*others, *placed]))
    except GraphError as exc:
        stuck = str(exc).split("among: ", 1)[-1].split(", ")
        keys = [f"nodes.{n.id.split('.', 1)[1]}" for n in placed if n.id in stuck]
        raise PlacedConfigError(
            f"millpond.yml {' and '.join(keys) or 'nodes'}: `after`/`before` make a cycle "
            f"({exc}); a node cannot come both before and after another"
        ) from None


def _descendants(nodes: dict[str, Node], start: str) -> set[str]:
    children: dict[str, list[str]] = {}
    for n in nodes.values():
        for up in n.upstream:
            children.setdefault(up, []).append(n.id)
    seen: set[str] = set()
    stack = [start]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen
