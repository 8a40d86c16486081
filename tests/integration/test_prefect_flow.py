"""The Prefect flow's scheduling rules, on a real Prefect server with a synthetic graph."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from millpond.core.graph import Graph, Node, topological
from millpond.runtime.execute import NodeFailed

pytestmark = pytest.mark.integration


class RecordingHooks:
    """Runs nodes by sleeping briefly; fails the named ones; records what happened."""

    def __init__(self, failing: dict[str, int], retryable: bool = True) -> None:
        self.failing = failing  # node_id -> how many attempts fail
        self.retryable = retryable
        self.attempts: dict[str, list[int]] = {}
        self.skipped: dict[str, str] = {}
        self.flow_run_id: str | None = None
        self.running = 0
        self.max_parallel = 0
        self._lock = threading.Lock()

    def run(self, node_id: str, attempt: int) -> Any:
        with self._lock:
            self.attempts.setdefault(node_id, []).append(attempt)
            self.running += 1
            self.max_parallel = max(self.max_parallel, self.running)
        try:
            time.sleep(0.3)
            if attempt <= self.failing.get(node_id, 0):
                raise NodeFailed(f"{node_id} broke", retryable=self.retryable)
            return node_id
        finally:
            with self._lock:
                self.running -= 1

    def skip(self, node_id: str, reason: str) -> None:
        self.skipped[node_id] = reason

    def flow_started(self, flow_run_id: str) -> None:
        self.flow_run_id = flow_run_id


def diamond(retries: int = 0) -> Graph:
    """a -> b -> d, a -> c -> e, and f independent; publish after everything."""
    spec = {"a": (), "b": ("a",), "c": ("a",), "d": ("b",), "e": ("c",), "f": ()}
    nodes = [Node(n, "dbt", ups, retries=retries, retry_delay_seconds=0) for n, ups in spec.items()]
    nodes.append(Node("publish", "publish", ("d", "e", "f")))
    return Graph(topological(nodes))


def run(graph: Graph, hooks: RecordingHooks) -> Any:
    from millpond.flows.pipeline import build_flow

    return build_flow("millpond-test", graph, hooks, concurrency=4)(
        run_id="20261202T040000Z-abc123", return_state=True
    )


def test_failure_stops_only_dependants_and_fails_the_flow(prefect_api: str) -> None:
    hooks = RecordingHooks(failing={"b": 1})
    state = run(diamond(), hooks)
    assert state.is_failed()
    assert set(hooks.attempts) == {"a", "b", "c", "e", "f"}  # d and publish never ran
    assert set(hooks.skipped) == {"d", "publish"}
    assert "b" in hooks.skipped["d"]
    assert hooks.flow_run_id


def test_independent_nodes_run_concurrently(prefect_api: str) -> None:
    hooks = RecordingHooks(failing={})
    state = run(diamond(), hooks)
    assert state.is_completed()
    assert hooks.max_parallel >= 2
    assert list(hooks.attempts)[-1] == "publish"


def test_the_flow_run_is_named_after_the_run_id(prefect_api: str) -> None:
    import httpx

    hooks = RecordingHooks(failing={})
    assert run(diamond(), hooks).is_completed()
    flow_run = httpx.get(f"{prefect_api}/flow_runs/{hooks.flow_run_id}", timeout=10).json()
    assert flow_run["name"] == "20261202T040000Z-abc123"


def test_retries_rerun_a_node_with_the_next_attempt_number(prefect_api: str) -> None:
    hooks = RecordingHooks(failing={"c": 1})
    state = run(diamond(retries=2), hooks)
    assert state.is_completed()
    assert hooks.attempts["c"] == [1, 2]


def test_permanent_failures_are_not_retried(prefect_api: str) -> None:
    hooks = RecordingHooks(failing={"c": 5}, retryable=False)
    state = run(diamond(retries=2), hooks)
    assert state.is_failed()
    assert hooks.attempts["c"] == [1]
