"""Source freshness as a node's tests: each source checked once per run, dbt's statuses kept
(`runtime error` is an error), a source dbt did not answer for is an error naming why."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from conftest import captured_warnings

from millpond.nodes.dbt.freshness import Freshness
from millpond.nodes.dbt.runner import DbtBuild


class Target:
    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[None]:
        yield


class Project:
    """Answers `dbt source freshness` with the given statuses, and counts the calls."""

    def __init__(self, statuses: dict[str, str], exception: Exception | None = None) -> None:
        self.statuses = statuses
        self.exception = exception
        self.target = Target()
        self.calls: list[list[str]] = []

    def invoke(self, command: list[str], args: list[str]) -> Any:
        assert command == ["source", "freshness"]
        self.calls.append(args)
        wanted = {a.removeprefix("source:") for a in args if a.startswith("source:")}
        results = [self._result(s) for s in sorted(wanted) if s in self.statuses]
        return SimpleNamespace(result=SimpleNamespace(results=results), exception=self.exception)

    def _result(self, name: str) -> Any:
        source_name, table = name.split(".")
        rule = SimpleNamespace(
            warn_after=SimpleNamespace(count=1, period=SimpleNamespace(value="day")),
            error_after=SimpleNamespace(count=None, period=None),
        )
        node = SimpleNamespace(
            source_name=source_name,
            name=table,
            unique_id=f"source.p.{name}",
            freshness=rule,
            loaded_at_field="_loaded_at",
        )
        return SimpleNamespace(node=node, status=self.statuses[name], age=3 * 86400.0)


def test_each_source_is_checked_once_and_a_warning_is_logged() -> None:
    project = Project({"shop.orders": "warn", "shop.customers": "pass"})
    checks = Freshness(project)  # type: ignore[arg-type]
    with captured_warnings() as warnings:
        first = checks.check(["shop.orders", "shop.customers"])
    again = checks.check(["shop.orders"])

    assert [(r.name, r.status) for r in first] == [
        ("source freshness: shop.customers", "pass"),
        ("source freshness: shop.orders", "warn"),
    ]
    assert again == [first[1]]
    assert len(project.calls) == 1
    assert (
        first[1].message
        == "latest _loaded_at is 3.0 days old (warn after 1 day, error after never)"
    )
    assert any("shop.orders: warn" in w for w in warnings)
    assert DbtBuild(first).success


def test_a_stale_or_unchecked_source_is_an_error() -> None:
    project = Project({"shop.orders": "runtime error"}, exception=RuntimeError("no warehouse"))
    results = Freshness(project).check(["shop.orders", "shop.events"])  # type: ignore[arg-type]

    assert [(r.name, r.status) for r in results] == [
        ("source freshness: shop.events", "error"),
        ("source freshness: shop.orders", "error"),
    ]
    assert "no warehouse" in (results[0].message or "")
    assert not DbtBuild(results).success
