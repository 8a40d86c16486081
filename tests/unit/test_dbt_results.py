"""How one node's dbt results decide the node: errors and failing tests fail it, warnings do not."""

from __future__ import annotations

from millpond.nodes.dbt.runner import DbtBuild, DbtResult


def result(name: str, kind: str, status: str, failures: int | None = None) -> DbtResult:
    return DbtResult(f"{kind}.x.{name}", name, kind, status, failures, None, None)


def test_a_warning_test_does_not_fail_the_node() -> None:
    build = DbtBuild([result("m", "model", "success"), result("t", "test", "warn", 3)])
    assert build.success
    assert [t.name for t in build.tests] == ["t"]


def test_a_failing_test_fails_the_node_and_is_named() -> None:
    build = DbtBuild([result("m", "model", "success"), result("t", "test", "fail", 2)])
    assert not build.success
    assert "t: fail" in build.failure_message()


def test_a_model_error_or_an_invocation_error_fails_the_node() -> None:
    assert not DbtBuild([result("m", "model", "error")]).success
    crashed = DbtBuild([], error="dbt failed: boom")
    assert not crashed.success and crashed.failure_message() == "dbt failed: boom"
