"""Prometheus metrics of the stack, read from the ledger at scrape time.

A custom collector rather than counters updated in place: runs happen in other processes
(the CLI, Airflow tasks), so the ledger is the one place that knows them all. When the ledger is
down the scrape still answers, with `millpond_ledger_up 0` and the local buffer's size, which is
exactly what an alert wants to see."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from millpond.metadata import queries
from millpond.metadata.db import connect
from millpond.metadata.records import RUN_STATUSES

DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
RECENT_RUNS = 100


def buffered_records(paths: list[Path]) -> int:
    """Ledger records waiting in the local buffer files (written while a ledger was down),
    whichever ledger they are for: none of them is in its database yet."""
    count = 0
    for path in paths:
        try:
            with path.open("rb") as fh:
                count += sum(1 for line in fh if line.strip())
        except FileNotFoundError:
            pass
    return count


def duration_histogram(rows: list[dict[str, Any]]) -> HistogramMetricFamily:
    """Node durations per kind as one cumulative histogram each."""
    family = HistogramMetricFamily(
        "millpond_node_duration_seconds",
        f"Duration of finished node attempts over the last {RECENT_RUNS} runs, by kind",
        labels=["kind"],
    )
    by_kind: dict[str, list[float]] = {}
    for row in rows:
        if row["duration_ms"] is not None:
            by_kind.setdefault(row["kind"] or "unknown", []).append(row["duration_ms"] / 1000)
    for kind, values in sorted(by_kind.items()):
        buckets = [(str(b), float(sum(1 for v in values if v <= b))) for b in DURATION_BUCKETS]
        buckets.append(("+Inf", float(len(values))))
        family.add_metric([kind], buckets, sum_value=sum(values))
    return family


class LedgerCollector(Collector):
    """Collects every millpond metric from one ledger connection per scrape."""

    def __init__(self, ledger_url: Any, buffer_paths: list[Path]) -> None:
        self.ledger_url = ledger_url  # a callable: resolving it may start the embedded server
        self.buffer_paths = buffer_paths

    def collect(self) -> Iterator[Metric]:
        buffer = GaugeMetricFamily(
            "millpond_ledger_buffer_records", "Ledger records buffered locally, not yet written"
        )
        buffer.add_metric([], buffered_records(self.buffer_paths))
        yield buffer
        up = GaugeMetricFamily("millpond_ledger_up", "1 if the ledger database answered")
        try:
            with connect(self.ledger_url()) as conn:
                families = list(self._from_ledger(conn))
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _from_ledger(self, conn: Any) -> Iterator[Metric]:
        runs = GaugeMetricFamily("millpond_runs", "Runs in the ledger by status", labels=["status"])
        counts = queries.runs_by_status(conn)
        for status in RUN_STATUSES:
            runs.add_metric([status], counts.get(status, 0))
        yield runs
        yield duration_histogram(queries.node_durations(conn, RECENT_RUNS))
        rows = CounterMetricFamily(
            "millpond_rows_loaded", "Rows reported by successful node attempts", labels=["node"]
        )
        for node, n in sorted(queries.rows_loaded_by_node(conn).items()):
            rows.add_metric([node], n)
        yield rows
        failures = CounterMetricFamily(
            "millpond_test_failures", "Runs in which a data test failed or errored", labels=["test"]
        )
        for test, n in sorted(queries.test_failures_by_test(conn).items()):
            failures.add_metric([test], n)
        yield failures
        fresh = GaugeMetricFamily(
            "millpond_source_last_success_timestamp_seconds",
            "When each source table was last loaded successfully (Unix time)",
            labels=["source", "table"],
        )
        for node, at in sorted(queries.last_success_by_node(conn, "load.").items()):
            _, source, table = [*node.split(".", 2), "", ""][:3]
            if at is not None:
                fresh.add_metric([source, table], at.timestamp())
        yield fresh


def registry_for(ledger_url: Any, buffer_paths: list[Path]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(ledger_url, buffer_paths))
    return registry
