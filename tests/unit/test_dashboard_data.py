"""What the dashboard's charts get: the top nodes and tables by name, the rest folded into one
bar that says how many it holds, a run's timeline capped at 40 lanes, retried nodes once."""

from __future__ import annotations

import datetime as dt
from typing import Any

from millpond.serve.dashboard_data import TIMELINE_ROWS, slowest_nodes, table_rows, timeline

T0 = dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC)


def node(i: int, ms: int | None, status: str = "success", attempt: int = 1) -> dict[str, Any]:
    start = T0 + dt.timedelta(seconds=i)
    return {
        "node_id": f"dbt.model_{i:03d}",
        "status": status,
        "attempt": attempt,
        "duration_ms": ms,
        "started_at": start,
        "finished_at": None if ms is None else start + dt.timedelta(milliseconds=ms),
        "error": "boom" if status == "failed" else None,
    }


def test_the_slowest_nodes_by_name_and_the_rest_as_one_total() -> None:
    nodes = [node(i, 1000 * (i + 1)) for i in range(300)]
    nodes.append(node(300, None, "skipped"))
    chart = slowest_nodes(nodes, top=15)
    assert [b["label"] for b in chart["bars"]][:2] == ["dbt.model_299", "dbt.model_298"]
    assert len(chart["bars"]) == 15 and chart["nodes"] == 300  # the skipped one is not timed
    assert chart["folded"] == {"count": 285, "value": sum(range(1, 286))}


def test_few_nodes_fold_nothing() -> None:
    chart = slowest_nodes([node(i, 10) for i in range(5)], top=15)
    assert len(chart["bars"]) == 5 and chart["folded"] is None


def test_the_timeline_keeps_the_longest_nodes_by_name_in_start_order() -> None:
    run = {"run_id": "r", "started_at": T0}
    nodes = [node(i, 100_000 if i % 10 == 0 else 500) for i in range(300)]
    nodes[5] = node(5, None, "running")
    chart = timeline(run, nodes)
    assert len(chart["rows"]) == TIMELINE_ROWS - 1
    assert chart["folded"]["count"] == 300 - (TIMELINE_ROWS - 1)
    starts = [r["start"] for r in chart["rows"]]
    assert starts == sorted(starts)
    assert {f"dbt.model_{i:03d}" for i in range(0, 300, 10)} <= {
        r["node_id"] for r in chart["rows"]
    }
    assert chart["rows"][0] == {
        "node_id": "dbt.model_000",
        "status": "success",
        "start": 0.0,
        "end": 100.0,
        "error": None,
    }
    small = timeline(run, nodes[:33])
    assert len(small["rows"]) == 33 and small["folded"] is None
    (going,) = [r for r in small["rows"] if r["node_id"] == "dbt.model_005"]
    assert going["status"] == "running" and going["end"] is None  # drawn to the axis' end


def test_rows_per_table_from_the_newest_run_that_counted() -> None:
    old = T0 - dt.timedelta(days=1)
    history = [
        {"relation": f"marts.t{i:03d}", "run_id": "new", "rows": i, "recorded_at": T0}
        for i in range(20)
    ] + [{"relation": "marts.gone", "run_id": "old", "rows": 10**9, "recorded_at": old}]
    chart = table_rows(history, top=15)
    assert chart["run_id"] == "new"
    assert [b["value"] for b in chart["bars"]] == list(range(19, 4, -1))
    assert chart["folded"] == {"count": 5, "value": 0 + 1 + 2 + 3 + 4}
    assert table_rows([]) == {"run_id": None, "bars": [], "folded": None}


def test_a_retried_node_counts_once_with_its_last_attempt() -> None:
    from millpond.serve.dashboard_data import _last_attempts

    first = node(1, 500, "failed", attempt=1)
    second = node(1, 700, "success", attempt=2)
    assert _last_attempts([second, node(0, 100), first]) == [node(0, 100), second]
