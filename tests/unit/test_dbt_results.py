"""How one node's dbt results decide the node: errors and failing tests fail it, warnings do not."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from millpond.nodes.dbt.runner import DbtBuild, DbtResult, _finished_listener


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


def test_unit_tests_and_source_freshness_are_the_nodes_tests() -> None:
    build = DbtBuild(
        [
            result("source freshness: shop.orders", "source", "warn"),
            result("ut", "unit_test", "pass", 0),
            result("m", "model", "success"),
        ]
    )
    assert build.success
    assert [t.name for t in build.tests] == ["source freshness: shop.orders", "ut"]
    assert not DbtBuild([result("source freshness: shop.orders", "source", "error")]).success
    assert not DbtBuild([result("ut", "unit_test", "fail", 1)]).success


def event(name: str, uid: str, status: str = "success") -> Any:
    """A dbt event as a callback gets it (only the fields the listener reads)."""
    run_result = SimpleNamespace(status=status, message=None, num_failures=0, adapter_response=None)
    node_info = SimpleNamespace(unique_id=uid, node_name=uid.split(".")[-1], resource_type="model")
    data = SimpleNamespace(node_info=node_info, run_result=run_result)
    return SimpleNamespace(info=SimpleNamespace(name=name), data=data)


def test_a_microbatch_model_is_passed_on_once_when_its_last_batch_is_done() -> None:
    heard: list[tuple[str, str]] = []
    listen = _finished_listener(lambda r: heard.append((r.name, r.status)))
    batches = "model.x.fct_events"
    for _ in range(2):  # two batches, running at the same time
        listen(event("NodeStart", batches))
        listen(event("LogStartBatch", batches))
    listen(event("NodeFinished", batches))
    listen(event("NodeFinished", "model.x.other"))  # another model, between the batches
    listen(event("NodeFinished", batches, "error"))
    assert heard == [("other", "success")]
    listen(event("NodeFinished", batches, "partial success"))
    assert heard == [("other", "success"), ("fct_events", "partial success")]
