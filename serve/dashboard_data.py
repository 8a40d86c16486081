"""What the dashboard's charts draw, already cut to what stays readable.

A run may have 30 nodes or 300 and a project 10 tables or 300: the charts show the slowest
nodes (and the largest tables) by name and fold the rest into one bar that says how many it
holds, and the timeline shows the longest nodes of the run with the others in one lane. The
folding is done here, in one place, so the page (static/dashboard.js) only lays things out."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

from millpond.metadata import queries

RECENT_RUNS = 30
TOP_NODES = 15  # bars by name in "slowest nodes"; the rest are one bar
TOP_TABLES = 15  # bars by name in "rows per table"
TIMELINE_ROWS = 40  # nodes by name in a run's timeline; the rest share one lane
ERROR_CHARS = 300


def _epoch(value: dt.datetime | None) -> float | None:
    return value.timestamp() if value else None


def _last_attempts(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per node: its last attempt (a retried node counts once), in start order."""
    last: dict[str, dict[str, Any]] = {}
    for node in nodes:
        if node["node_id"] not in last or node["attempt"] >= last[node["node_id"]]["attempt"]:
            last[node["node_id"]] = node
    return sorted(last.values(), key=lambda n: (n["started_at"] is None, n["started_at"] or 0))


def run_series(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each recent run, oldest first: status, start and duration (None while it runs)."""
    return [
        {
            "run_id": r["run_id"],
            "status": r["status"],
            "started": _epoch(r["started_at"]),
            "duration_s": None if r["duration_ms"] is None else r["duration_ms"] / 1000,
        }
        for r in runs
    ]


def slowest_nodes(nodes: list[dict[str, Any]], top: int = TOP_NODES) -> dict[str, Any]:
    """The `top` slowest nodes by name, slowest first; the others as one total."""
    timed = sorted(
        (n for n in nodes if n["duration_ms"] is not None and n["status"] != "skipped"),
        key=lambda n: -n["duration_ms"],
    )
    bars = [
        {"label": n["node_id"], "value": n["duration_ms"] / 1000, "status": n["status"]}
        for n in timed[:top]
    ]
    rest = timed[top:]
    folded = (
        {"count": len(rest), "value": sum(n["duration_ms"] for n in rest) / 1000} if rest else None
    )
    return {"bars": bars, "folded": folded, "nodes": len(timed)}


def timeline(run: dict[str, Any] | None, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """A run's nodes as spans in seconds from the run's start: the TIMELINE_ROWS longest by
    name (in start order), the others together in one lane."""
    if run is None:
        return {"run_id": None, "rows": [], "folded": None}
    origin = _epoch(run["started_at"]) or 0.0
    spans = []
    for n in nodes:
        start = _epoch(n["started_at"])
        if start is None:
            continue
        end = _epoch(n["finished_at"])
        spans.append(
            {
                "node_id": n["node_id"],
                "status": n["status"],
                "start": max(0.0, start - origin),
                "end": None if end is None else max(0.0, end - origin),
                "error": (n["error"] or "")[:ERROR_CHARS] or None,
            }
        )
    if len(spans) <= TIMELINE_ROWS:
        return {"run_id": run["run_id"], "rows": spans, "folded": None}
    by_length = sorted(spans, key=lambda s: -((s["end"] or s["start"]) - s["start"]))
    named = {id(s) for s in by_length[: TIMELINE_ROWS - 1]}
    rows = [s for s in spans if id(s) in named]
    rest = [s for s in spans if id(s) not in named]
    folded = {
        "count": len(rest),
        "spans": [[s["start"], s["end"], s["status"]] for s in rest],
    }
    return {"run_id": run["run_id"], "rows": rows, "folded": folded}


def table_rows(history: list[dict[str, Any]], top: int = TOP_TABLES) -> dict[str, Any]:
    """Rows per relation as the newest run that counted them recorded: the `top` largest by
    name, the others as one total."""
    if not history:
        return {"run_id": None, "bars": [], "folded": None}
    newest = max(history, key=lambda h: h["recorded_at"])["run_id"]
    counts = sorted(
        ((h["relation"], h["rows"]) for h in history if h["run_id"] == newest),
        key=lambda c: (-c[1], c[0]),
    )
    bars = [{"label": rel, "value": rows} for rel, rows in counts[:top]]
    rest = counts[top:]
    folded = {"count": len(rest), "value": sum(r for _, r in rest)} if rest else None
    return {"run_id": newest, "bars": bars, "folded": folded}


def charts(conn: psycopg.Connection, run_id: str | None = None) -> dict[str, Any]:
    """Everything the page draws. `run_id` picks the run whose nodes are shown (a run of the
    ledger); by default the newest finished run, else the newest."""
    runs = list(reversed(queries.list_runs(conn, RECENT_RUNS)))
    chosen = queries.get_run(conn, run_id) if run_id else None
    if chosen is None:
        finished = [r for r in runs if r["duration_ms"] is not None]
        newest = finished or runs
        chosen = newest[-1] if newest else None
    nodes = _last_attempts(queries.run_nodes(conn, chosen["run_id"])) if chosen else []
    return {
        "runs": run_series(runs),
        "run": None if chosen is None else {"run_id": chosen["run_id"], "status": chosen["status"]},
        "slowest": slowest_nodes(nodes),
        "timeline": timeline(chosen, nodes),
        "tables": table_rows(queries.row_count_history(conn, None, RECENT_RUNS)),
    }
