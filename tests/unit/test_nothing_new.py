"""A run is settled before the orchestrator starts only when every node says it is up to date."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from millpond.core.graph import Graph, Node
from millpond.core.registry import NodeKind, Registry
from millpond.runtime import nothing_new


def _never_run(*_: Any) -> None:
    raise AssertionError("a look ahead must not run a node")


def _settled(report: Any) -> None:
    report.status = "unchanged"


def _broken(*_: Any) -> None:
    raise OSError("inbox folder does not exist")


KINDS = {
    "steady": NodeKind(build=list, run=_never_run, up_to_date=lambda s, n: _settled),
    "busy": NodeKind(build=list, run=_never_run, up_to_date=lambda s, n: None),
    "opaque": NodeKind(build=list, run=_never_run),  # a kind that cannot tell
    "broken": NodeKind(build=list, run=_never_run, up_to_date=_broken),
}


@pytest.fixture(autouse=True)
def kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    registry: Registry[NodeKind] = Registry("node")
    for name, kind in KINDS.items():
        registry.register(name, kind)
    monkeypatch.setattr(nothing_new, "NODE_KINDS", registry)


def look_ahead(*kinds: str) -> dict[str, Any] | None:
    nodes = []
    for i, kind in enumerate(kinds):
        nodes.append(Node(f"n{i}", kind, tuple(n.id for n in nodes[-1:])))
    return nothing_new._all_up_to_date(SimpleNamespace(graph=Graph(tuple(nodes))))


def test_a_graph_of_up_to_date_nodes_is_settled_in_graph_order():
    assert list(look_ahead("steady", "steady", "steady") or {}) == ["n0", "n1", "n2"]


@pytest.mark.parametrize("odd_one", ["busy", "opaque", "broken"])
def test_one_node_with_work_or_that_cannot_tell_sends_the_run_to_the_orchestrator(odd_one):
    assert look_ahead("steady", odd_one, "steady") is None
