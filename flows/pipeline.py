"""The graph as a Prefect flow: one task per node, independent nodes concurrently.

The flow schedules the graph itself instead of handing Prefect a static chain of futures: a
node is submitted once all its upstream nodes succeeded, and is recorded as skipped (without
running) once any of them failed. That gives the rule users expect from a DAG runner: a
failure stops only its dependants, the rest of the graph still runs, and the run as a whole
fails. Upstream futures are still passed as `wait_for`, so the Prefect UI draws the edges.

What a node does is injected (`GraphHooks`): flows/ knows the graph, not the packages that
execute it (see the import rule in docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, as_completed
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner

from millpond.core.graph import Graph
from millpond.core.logs import logger


class GraphHooks(Protocol):
    """What the flow needs from the composition root."""

    def run(self, node_id: str, attempt: int) -> Any: ...
    def skip(self, node_id: str, reason: str) -> None: ...
    def flow_started(self, flow_run_id: str) -> None: ...


def _node_task(hooks: GraphHooks) -> Any:
    """The Prefect task running one node; retries re-run it with a higher attempt number."""

    @task(name="node", persist_result=False, cache_policy=NO_CACHE)
    def node_task(node_id: str) -> str:
        from prefect.runtime import task_run

        hooks.run(node_id, int(task_run.run_count or 1))
        return node_id

    return node_task


def _forward_to_prefect(message: Any) -> None:
    """A loguru sink: node logs also appear in the Prefect UI, under their task run."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    record = message.record
    with contextlib.suppress(MissingContextError):
        get_run_logger().log(logging.getLevelName(record["level"].name), record["message"])


RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


@contextlib.contextmanager
def _run_logs_to_ui_only() -> Iterator[None]:
    """While the graph runs, flow- and task-run log records go to the Prefect API (the UI)
    only. Node logs reach the console through loguru already; Prefect's run loggers also
    propagate to its root console handler, which printed every warning and error twice (and
    a failed node a third time as "Finished in state Failed"). Prefect 3.8's logging config
    has no console handler of their own whose level an environment variable could set."""
    saved = {name: logging.getLogger(name).propagate for name in RUN_LOGGERS}
    for name in RUN_LOGGERS:
        logging.getLogger(name).propagate = False
    try:
        yield
    finally:
        for name, propagate in saved.items():
            logging.getLogger(name).propagate = propagate


def _worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """Retry unless the node said another attempt cannot help (see NodeFailed.retryable)."""
    error = state.result(raise_on_failure=False)
    return bool(getattr(error, "retryable", True))


def run_graph(graph: Graph, hooks: GraphHooks) -> dict[str, str]:
    """Run every node as soon as its upstream succeeded; returns node_id -> final status."""
    node_task = _node_task(hooks)
    status: dict[str, str] = {}
    futures: dict[str, PrefectFuture[Any]] = {}
    running: dict[PrefectFuture[Any], str] = {}
    waiting = list(graph.nodes)
    while waiting or running:
        still_waiting = []
        for node in waiting:
            blocked = [u for u in node.upstream if status.get(u) in ("failed", "skipped")]
            if blocked:
                status[node.id] = "skipped"
                hooks.skip(node.id, f"upstream did not succeed: {', '.join(blocked)}")
            elif all(status.get(u) == "success" for u in node.upstream):
                # No timeout_seconds: a thread cannot be interrupted, so Prefect would only
                # warn; node timeouts are enforced where nodes run as processes (Airflow).
                future = node_task.with_options(
                    name=node.id,
                    task_run_name=node.id,
                    retries=node.retries,
                    retry_delay_seconds=node.retry_delay_seconds,
                    retry_condition_fn=_worth_retrying,
                ).submit(node.id, wait_for=[futures[u] for u in node.upstream])
                futures[node.id] = future
                running[future] = node.id
            else:
                still_waiting.append(node)
        waiting = still_waiting
        if running:
            done = next(as_completed(list(running)))
            node_id = running.pop(done)
            done.wait()
            status[node_id] = "success" if done.state.is_completed() else "failed"
    return status


def run_in_flow(run_id: str, graph: Graph, hooks: GraphHooks) -> Any:
    """The body of a millpond flow, inside a running flow run: the graph's nodes become its
    task runs; returns the flow run's final state.

    Shared by the flow `millpond run` builds and the deployment's flow, so both are one flow run
    whose tasks are the nodes (never a flow run starting another one).
    """
    from prefect.runtime import flow_run

    hooks.flow_started(str(flow_run.id))
    sink = logger.add(_forward_to_prefect, level="INFO", format="{message}")
    try:
        with _run_logs_to_ui_only():
            status = run_graph(graph, hooks)
    finally:
        logger.remove(sink)
    bad = sorted(n for n, s in status.items() if s != "success")
    if bad:
        return Failed(message=f"run {run_id}: {len(bad)} nodes did not succeed: {', '.join(bad)}")
    return Completed(message=f"run {run_id}: {len(status)} nodes succeeded")


def build_flow(name: str, graph: Graph, hooks: GraphHooks, concurrency: int) -> Callable[..., Any]:
    """The Prefect flow (named after the project) that runs this graph through these hooks;
    its flow runs are named after the millpond run id.

    Graph and hooks are closed over rather than passed as parameters: Prefect stores flow
    parameters as JSON in its API, and these are live objects.
    """

    @flow(
        name=name,
        flow_run_name="{run_id}",
        # Prefect's annotation refuses its own ThreadPoolTaskRunner (PrefectHQ/prefect#16938)
        task_runner=ThreadPoolTaskRunner(max_workers=concurrency),  # type: ignore[arg-type]
        persist_result=False,
        log_prints=False,
        validate_parameters=False,
    )
    def millpond_flow(run_id: str) -> Any:
        return run_in_flow(run_id, graph, hooks)

    return millpond_flow
