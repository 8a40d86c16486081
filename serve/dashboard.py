"""The dashboard's data and HTML: server-rendered tables plus uPlot charts (vendored, no CDN).

The page is one request: the numbers are embedded as JSON and `static/dashboard.js` draws them,
so there is no build step and nothing to fetch from the internet."""

from __future__ import annotations

import datetime as dt
import json
from html import escape
from typing import Any

import psycopg

from millpond.metadata import queries

RECENT_RUNS = 30


def _epoch(value: dt.datetime | None) -> float | None:
    return value.timestamp() if value else None


def charts(conn: psycopg.Connection) -> dict[str, Any]:
    """Series for the three plots: run durations, node durations of the last run, table rows."""
    runs = list(reversed(queries.list_runs(conn, RECENT_RUNS)))
    finished = [r for r in runs if r["duration_ms"] is not None]
    run_series = {
        "x": [_epoch(r["started_at"]) for r in finished],
        "duration_s": [r["duration_ms"] / 1000 for r in finished],
        "status": [r["status"] for r in finished],
    }
    last = finished[-1]["run_id"] if finished else None
    nodes = [
        n
        for n in (queries.run_nodes(conn, last) if last else [])
        if n["duration_ms"] is not None and n["status"] != "skipped"
    ]
    node_series = {
        "run_id": last,
        "labels": [n["node_id"] for n in nodes],
        "duration_s": [n["duration_ms"] / 1000 for n in nodes],
    }
    history = queries.row_count_history(conn, None, RECENT_RUNS)
    order = [r["run_id"] for r in runs]
    starts = {r["run_id"]: _epoch(r["started_at"]) for r in runs}
    counted = [rid for rid in order if any(h["run_id"] == rid for h in history)]
    by_relation: dict[str, dict[str, int]] = {}
    for h in history:
        by_relation.setdefault(h["relation"], {})[h["run_id"]] = h["rows"]
    table_series = {
        "x": [starts[rid] for rid in counted],
        "series": {
            rel: [points.get(rid) for rid in counted] for rel, points in sorted(by_relation.items())
        },
    }
    return {"runs": run_series, "nodes": node_series, "tables": table_series}


def _cell(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return escape(value.strftime("%Y-%m-%d %H:%M:%S %Z"))
    return "" if value is None else escape(str(value))


def _table(rows: list[dict[str, Any]], columns: list[str], empty: str) -> str:
    if not rows:
        return f"<p class='empty'>{escape(empty)}</p>"
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='{escape(str(r.get(c)))}'>{_cell(r.get(c))}</td>"
            if c == "status"
            else f"<td>{_cell(r.get(c))}</td>"
            for c in columns
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(conn: psycopg.Connection, project: str, logout: bool = False) -> str:
    """The whole page (with a "log out" link when API keys guard it)."""
    runs = queries.list_runs(conn, 15)
    failing = [
        t for t in queries.test_history(conn, limit_runs=5) if t["status"] in ("fail", "error")
    ]
    freshness = queries.source_freshness(conn)
    data = json.dumps(charts(conn)).replace("</", "<\\/")
    return PAGE.format(
        project=escape(project),
        runs=_table(
            runs,
            ["run_id", "status", "trigger", "started_at", "duration_ms", "nodes", "tests_failed"],
            "no runs yet",
        ),
        failing=_table(
            failing, ["run_id", "test", "status", "failures", "message"], "no failing tests"
        ),
        freshness=_table(
            freshness,
            ["source", "table_name", "last_landed_at", "last_loaded_at", "partitions", "rows"],
            "nothing landed yet",
        ),
        data=data,
        logout=' <a href="/logout">log out</a>' if logout else "",
    )


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{project}: millpond dashboard</title>
<link rel="stylesheet" href="/static/vendor/uPlot.min.css">
<link rel="stylesheet" href="/static/dashboard.css">
</head><body>
<header><h1>{project}</h1>
<nav><a href="/docs">API</a> <a href="/metrics">metrics</a>{logout}</nav></header>
<section class="plots">
  <div><h2>Run duration (s)</h2><div class="plot" id="plot-runs"></div></div>
  <div><h2>Node duration, last run (s)</h2><div class="plot" id="plot-nodes"></div></div>
  <div><h2>Rows per table</h2><div class="plot" id="plot-tables"></div></div>
</section>
<section><h2>Recent runs</h2>{runs}</section>
<section><h2>Failing tests</h2>{failing}</section>
<section><h2>Freshness per source table</h2>{freshness}</section>
<script id="dashboard-data" type="application/json">{data}</script>
<script src="/static/vendor/uPlot.iife.min.js"></script>
<script src="/static/dashboard.js"></script>
</body></html>
"""
