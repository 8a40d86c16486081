"""dbt at the cost of one build: the ready dbt nodes of a run share one dbtRunner invocation.

Under the Prefect flow every dbt node is still its own task, submitted when its upstream
succeeded. Its task asks `Waves.settle(node)`: the first ask starts a wave in a worker thread:
every dbt node not claimed yet whose upstream succeeded, or is in the wave itself, goes into
one `dbt build`. dbt's NodeFinished events (callbacks) settle each node as soon as its model
and tests are done, so its task records and returns (or raises) its own outcome while the
build goes on, and the flow submits its children, which find themselves already in the wave.

Nodes found unchanged (millpond.nodes.fingerprints) settle at once and are not selected;
nodes a retry keeps (millpond.runtime.retry) never join a wave.
The freshness of the sources the wave's nodes read is checked first (millpond.nodes.dbt.freshness):
a node reading a source stale beyond its `error_after` fails without being built, and its
descendants in the wave are left out of the build (the flow skips them).
A node dbt skipped although its graph upstream succeeded (dbt skips the children of every
model a failing multi-model test touches; the graph only those of the test's owner) settles
as None: its task builds it alone, as a node is built under Airflow and on a retry.

Before starting a wave the worker waits while a source node feeding the dbt part is running
(extracts and loads in flight), so most runs need one or two waves, not one per load.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from millpond.core.graph import Node
from millpond.core.logs import logger, node_context
from millpond.nodes.dbt.freshness import Freshness
from millpond.nodes.dbt.graph import DBT_KIND, DbtParams
from millpond.nodes.dbt.runner import DbtBuild, DbtProject, DbtResult

OK = ("success", "unchanged")


@dataclass
class Settled:
    """How one graph node came out of a wave."""

    build: DbtBuild | None  # None: not built (dbt skipped it, or unchanged)
    rows: int | None = None
    unchanged: bool = False
    fingerprint: str | None = None


@dataclass
class _Slot:
    node: Node
    members: set[str]
    results: list[DbtResult] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    settled: Settled | None = None

    def settle(self, settled: Settled) -> None:
        self.settled = settled
        self.done.set()

    @property
    def ok(self) -> bool:
        s = self.settled
        return s is not None and (s.unchanged or (s.build is not None and s.build.success))


class Waves:
    """The run's shared dbt builds (one per run, see `waves`)."""

    def __init__(
        self,
        scope: Any,
        project: DbtProject,
        fingerprint: Callable[[Node], tuple[str | None, bool, int | None]],
        freshness: Freshness,
    ) -> None:
        self.scope = scope
        self.project = project
        self.freshness = freshness
        self.fingerprint = fingerprint  # node -> (fingerprint, unchanged, rows)
        graph = scope.graph
        kept: frozenset[str] = getattr(
            scope, "keep", frozenset()
        )  # a retry's nodes kept as they are
        self.nodes = [
            n
            for n in graph.nodes
            if n.kind == DBT_KIND and isinstance(n.params, DbtParams) and n.id not in kept
        ]
        self.dbt_ids = {n.id for n in self.nodes}
        self.feeders = _feeders(graph, self.dbt_ids)
        self.kept = kept
        self._slots: dict[str, _Slot] = {}
        self._owner: dict[str, str] = {}  # dbt unique_id -> graph node id
        self._requested: set[str] = set()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    def settle(self, node: Node) -> Settled:
        """Wait until the node is settled by a wave (starting one if needed)."""
        with self._lock:
            slot = self._slots.get(node.id)
            if slot is None:
                self._requested.add(node.id)
                if self._worker is None:
                    self._worker = threading.Thread(
                        target=self._work_logged, name="millpond-dbt-waves", daemon=True
                    )
                    self._worker.start()
        while True:
            with self._lock:
                slot = self._slots.get(node.id)
            if slot is not None:
                slot.done.wait()
                assert slot.settled is not None
                return slot.settled
            time.sleep(0.01)

    def close(self) -> None:
        """Wait for the build in flight. A node's task returns as soon as its own model and
        tests are done, so the flow can end while dbt is still finishing (other models, its
        run results, closing its DuckDB connection); a process that exits then is aborted by
        DuckDB's threads ("terminate called without an active exception")."""
        with self._lock:
            worker = self._worker
        if worker is not None:
            worker.join()

    # --- the worker ---------------------------------------------------------------------

    def _work_logged(self) -> None:
        with node_context(self.scope.run_id, "dbt"):  # threads do not inherit the context
            self._work()

    def _work(self) -> None:
        while True:
            self._wait_for_feeders()
            with self._lock:
                if not self._requested:
                    self._worker = None
                    return
                wave = self._claim()
            try:
                self._run(wave)
            except Exception as exc:  # settle everyone so no task waits forever
                logger.error(f"dbt wave failed: {type(exc).__name__}: {exc}")
                for slot in wave:
                    if not slot.done.is_set():
                        slot.settle(Settled(DbtBuild(error=f"dbt wave failed: {exc}")))

    def _wait_for_feeders(self) -> None:
        running = getattr(self.scope, "running", None)
        if running is None:
            return
        while any(f in running for f in self.feeders):
            time.sleep(0.02)

    def _claim(self) -> list[_Slot]:
        """Under the lock: the requested nodes and every node that can join them."""
        outcomes = getattr(self.scope, "outcomes", {})

        def ok(node_id: str, wave: set[str]) -> bool:
            if node_id in wave or node_id in self.kept:  # kept: never built, in the warehouse
                return True
            outcome = outcomes.get(node_id)
            if outcome is not None:  # the node's task is done (a rebuild alone included)
                return bool(outcome.status in OK)
            slot = self._slots.get(node_id)
            return slot is not None and slot.ok

        wave = {n for n in self._requested if n not in self._slots}
        self._requested.clear()
        grew = True
        while grew:
            grew = False
            for node in self.nodes:
                if node.id in wave or node.id in self._slots:
                    continue
                if all(ok(u, wave) for u in node.upstream):
                    wave.add(node.id)
                    grew = True
        slots = []
        for node in self.nodes:  # graph order: parents first
            if node.id in wave:
                params: DbtParams = node.params
                members = {params.unique_id}
                slot = _Slot(node, members)
                self._slots[node.id] = slot
                self._owner[params.unique_id] = node.id
                slots.append(slot)
        return slots

    def _run(self, wave: list[_Slot]) -> None:
        tests = self.project.manifest_tests()
        to_build: list[_Slot] = []
        for slot in wave:
            fingerprint, unchanged, rows = self.fingerprint(slot.node)
            if unchanged:
                slot.settle(Settled(None, rows, unchanged=True, fingerprint=fingerprint))
                continue
            params: DbtParams = slot.node.params
            for test in params.tests:
                uid = tests.get(test)
                if uid:
                    slot.members.add(uid)
                    self._owner[uid] = slot.node.id
            slot.settled = Settled(None, fingerprint=fingerprint)  # filled in below
            to_build.append(slot)
        to_build = self._fresh(to_build)
        if not to_build:
            return
        select = [s for slot in to_build for s in slot.node.params.select]
        names = ", ".join(slot.node.id for slot in to_build)
        logger.info(f"one dbt build of {len(to_build)} nodes ({len(select)} resources): {names}")
        events: queue.Queue[DbtResult | None] = queue.Queue()
        outcome: list[DbtBuild] = []
        target = self.scope.target
        with target.writer_lock():

            def build() -> None:
                try:
                    outcome.append(
                        self.project.build(select, self._full_refresh(), on_result=events.put)
                    )
                except Exception as exc:
                    outcome.append(DbtBuild(error=f"dbt failed: {type(exc).__name__}: {exc}"))
                finally:
                    events.put(None)

            # dbt runs in a thread of its own; this one holds the writer lock and counts the
            # rows of each model as it is finished (re-entrant lock, dbt's own connection is
            # shared in-process).
            context = contextvars.copy_context()
            runner = threading.Thread(
                target=context.run, args=(build,), name="millpond-dbt-build", daemon=True
            )
            runner.start()
            while (result := events.get()) is not None:
                self._on_result(result, target)
            runner.join()
        done = outcome[0] if outcome else DbtBuild(error="dbt did not run")
        for slot in to_build:
            if not slot.done.is_set():
                error = done.error or f"dbt did not finish {sorted(slot.members)}"
                self._finish(slot, DbtBuild(results=slot.results, error=error), target)

    def _fresh(self, slots: list[_Slot]) -> list[_Slot]:
        """The slots to build once the freshness of what they read is known: a slot whose
        source is stale beyond error_after settles failed unbuilt, and so do its descendants
        in the wave (their tasks are skipped by the flow; dbt must not build them)."""
        wanted = {s for slot in slots for s in slot.node.params.freshness}
        if not wanted:
            return slots
        checked = {r.name: r for r in self.freshness.check(wanted)}
        failed: set[str] = set()
        kept = []
        for slot in slots:  # graph order: parents first
            params: DbtParams = slot.node.params
            results = [checked[f"source freshness: {s}"] for s in params.freshness]
            assert slot.settled is not None
            if not DbtBuild(results).success:
                failed.add(slot.node.id)
                slot.settle(Settled(DbtBuild(results), fingerprint=slot.settled.fingerprint))
            elif failed & set(slot.node.upstream):
                failed.add(slot.node.id)
                error = f"upstream {sorted(failed & set(slot.node.upstream))} failed"
                slot.settle(Settled(DbtBuild(error=error), fingerprint=slot.settled.fingerprint))
            else:
                slot.results.extend(results)
                kept.append(slot)
        return kept

    def _on_result(self, result: DbtResult, target: Any) -> None:
        node_id = self._owner.get(result.unique_id)
        slot = self._slots.get(node_id) if node_id else None
        if slot is None or slot.done.is_set():
            return
        slot.results.append(result)
        slot.members.discard(result.unique_id)
        if not slot.members:
            self._finish(slot, DbtBuild(results=list(slot.results)), target)

    def _finish(self, slot: _Slot, build: DbtBuild, target: Any) -> None:
        assert slot.settled is not None
        params: DbtParams = slot.node.params
        model = [r for r in build.results if r.unique_id == params.unique_id]
        if model and model[0].status == "skipped" and build.error is None:
            slot.settle(Settled(None, fingerprint=slot.settled.fingerprint))
            return
        rows = None
        if build.success and params.relation and params.resource_type != "test":
            try:
                rows = target.row_count(params.relation)
            except Exception as exc:
                build.error = f"cannot count rows of {params.relation}: {exc}"
        slot.settle(Settled(build, rows, fingerprint=slot.settled.fingerprint))

    def _full_refresh(self) -> bool:
        return bool(getattr(self.scope, "full_refresh", False))


def _feeders(graph: Any, dbt_ids: set[str]) -> set[str]:
    """Nodes outside dbt that dbt nodes wait for and that wait for no dbt node themselves
    (extracts and loads): a wave started while one of them runs would be followed by
    another as soon as it is done."""
    by_id = {n.id: n for n in graph.nodes}
    after_dbt: set[str] = set()
    for node in graph.nodes:  # topological order
        if node.id in dbt_ids or any(u in after_dbt for u in node.upstream):
            after_dbt.add(node.id)
    feeders: set[str] = set()
    stack = [u for d in dbt_ids for u in by_id[d].upstream]
    while stack:
        node_id = stack.pop()
        if node_id in feeders or node_id in after_dbt:
            continue
        feeders.add(node_id)
        stack.extend(by_id[node_id].upstream)
    return feeders
