"""Source freshness: `dbt source freshness` for the sources a run's dbt nodes read.

A dbt source with a freshness rule (`warn_after` / `error_after` and a `loaded_at_field`) is
checked once per run, by the first node about to be built that reads it (`DbtParams.freshness`),
before that node's build. What dbt finds is a test result of each node reading the source
(`source freshness: <source>.<table>`; the ledger's test_results keep one row per test and
run, under the reader recorded last): `pass`; `warn`
(logged as a warning, the node builds); `error` (stale beyond `error_after`, or dbt could not
check): the node fails without building, so nothing is built from stale data, and its
descendants are skipped. A node found unchanged (millpond.nodes.fingerprints) checks nothing:
it builds nothing either.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from millpond.core.logs import logger
from millpond.nodes.dbt.runner import DbtProject, DbtResult

PREFIX = "source freshness: "


class Freshness:
    """The run's freshness checks: each source checked once, whichever node asks first."""

    def __init__(self, project: DbtProject) -> None:
        self.project = project
        self._checked: dict[str, DbtResult] = {}
        self._lock = threading.Lock()

    def check(self, sources: Iterable[str]) -> list[DbtResult]:
        """The results for these `source.table` names, checking those not checked yet."""
        wanted = sorted(set(sources))
        with self._lock:
            missing = [s for s in wanted if s not in self._checked]
            if missing:
                self._checked.update(self._run(missing))
            return [self._checked[s] for s in wanted]

    def _run(self, sources: list[str]) -> dict[str, DbtResult]:
        args = ["--select", *(f"source:{s}" for s in sources)]
        try:
            with self.project.target.writer_lock():  # it reads the warehouse, as a build does
                outcome = self.project.invoke(["source", "freshness"], args)
            found = {_name(r): _result(r) for r in getattr(outcome.result, "results", None) or []}
            problem = str(outcome.exception) if outcome.exception is not None else None
        except Exception as exc:  # dbt could not run at all: every source is unchecked
            found, problem = {}, f"{type(exc).__name__}: {exc}"
        for source in sources:
            if source not in found:
                found[source] = DbtResult(
                    f"source.{source}",
                    PREFIX + source,
                    "source",
                    "error",
                    None,
                    f"freshness not checked: {problem or 'dbt returned no result'}",
                    None,
                )
            result = found[source]
            if result.status == "warn":
                logger.warning(f"{result.name}: warn ({result.message})")
            elif result.status != "pass":
                logger.error(f"{result.name}: {result.status} ({result.message})")
        return found


def _name(result: Any) -> str:
    node = result.node
    return f"{node.source_name}.{node.name}"


def _result(result: Any) -> DbtResult:
    """A SourceFreshnessResult as a node's test result; `runtime error` is an error."""
    status = str(result.status)
    age = getattr(result, "age", None)
    rule = result.node.freshness
    if age is not None:
        message = (
            f"latest {result.node.loaded_at_field or 'load'} is {_human(age)} old "
            f"(warn after {_limit(rule.warn_after)}, error after {_limit(rule.error_after)})"
        )
    else:
        message = str(result.message or status)
    return DbtResult(
        result.node.unique_id,
        PREFIX + _name(result),
        "source",
        "error" if status == "runtime error" else status,
        None,
        message,
        None,
    )


def _limit(limit: Any) -> str:
    if limit is None or not getattr(limit, "count", None):
        return "never"
    period = getattr(limit.period, "value", limit.period)
    return f"{limit.count} {period}{'s' if limit.count != 1 else ''}"


def _human(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} seconds"
