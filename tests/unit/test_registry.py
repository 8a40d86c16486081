"""Kinds registered by name: built-ins through the entry point, each name once."""

from __future__ import annotations

import pytest

from millpond.core.registry import NODE_KINDS, SOURCES, TARGETS, Registry, RegistryError, Stage


def test_builtin_kinds_are_registered_on_first_use():
    assert "files" in SOURCES
    assert TARGETS.names()[:2] == ["duckdb", "postgres"]  # the first is the default target
    # the order node kinds build in (each sees the nodes of the kinds before it)
    ranks = [NODE_KINDS.rank(kind) for kind in ["extract", "load", "dbt", "publish"]]
    assert ranks == sorted(ranks) and ranks[-1] < len(NODE_KINDS.names())


def test_a_name_registered_twice_with_another_kind_is_refused():
    registry: Registry[object] = Registry("widget")
    first = object()
    registry.register("a", first)

    registry.register("a", first)  # the same kind again: a no-op
    with pytest.raises(RegistryError, match=r"widget kind 'a' is registered twice"):
        registry.register("a", object())

    assert registry.get("a") is first


def test_an_unknown_kind_names_the_known_ones():
    registry: Registry[object] = Registry("widget")
    registry.register("a", object())
    registry.register("b", object())

    with pytest.raises(RegistryError, match=r"unknown widget kind 'c' \(known: a, b\)"):
        registry.get("c")
    assert "c" not in registry and "a" in registry


def test_rank_follows_registration_order_and_unknown_names_come_last():
    registry: Registry[object] = Registry("widget")
    for name in ["zeta", "alpha"]:
        registry.register(name, object())

    assert [registry.rank(n) for n in ["zeta", "alpha", "other"]] == [0, 1, 2]


def test_a_declared_order_wins_over_registration_order_and_keeps_it_among_equals():
    registry: Registry[tuple[str, int]] = Registry("widget", order=lambda kind: kind[1])
    for name, place in [("last", 40), ("b", 30), ("first", 10), ("a", 30)]:
        registry.register(name, (name, place))

    assert registry.names() == ["first", "b", "a", "last"]
    assert [registry.rank(n) for n in ["first", "b", "a", "last", "other"]] == [0, 1, 2, 3, 4]


def test_builtin_node_kinds_declare_their_stage():
    stages = {name: kind.stage for name, kind in NODE_KINDS.items()}
    assert stages == {
        "extract": Stage.EXTRACT,
        "load": Stage.LOAD,
        "dbt": Stage.TRANSFORM,
        "publish": Stage.PUBLISH,
        "python": Stage.PLACED,
        "command": Stage.PLACED,
    }


def test_kinds_join_and_leave_only_through_the_registry():
    """A write into the listing would land in a cached copy and vanish at the next
    registration; the listing refuses it instead."""
    family: Registry[str] = Registry("thing")
    family.register("a", "kind a")
    with pytest.raises(TypeError):
        family.kinds["b"] = "kind b"  # type: ignore[index]
    family.register("b", "kind b")
    family.unregister("a")
    assert dict(family.kinds) == {"b": "kind b"}
    assert "a" not in family
