"""The dashboard's HTML: server-rendered tables, and SVG charts drawn by static/dashboard.js.

The page is one request: the numbers (serve.dashboard_data, already folded to what stays
readable) are embedded as JSON and `static/dashboard.js` draws them as SVG, measuring its own
labels, so there is no build step, no charting library and nothing to fetch from the internet."""

from __future__ import annotations

import datetime as dt
import json
from html import escape
from typing import Any
from urllib.parse import quote

import psycopg

from millpond.metadata import queries
from millpond.serve.dashboard_data import charts

FAILURES = 20


def _link(href: str, text: str) -> str:
    return f"<a href='{escape(href)}'>{escape(text)}</a>"


def _timeline_href(run_id: str) -> str:
    return f"/?run={quote(run_id, safe='')}#timeline"


def log_href(run_id: str, node_id: str) -> str:
    """The node's part of the run's log (serve/routes/runs.py)."""
    return f"/runs/{quote(run_id, safe='')}/nodes/{quote(node_id, safe='')}/log"


def _failures(conn: psycopg.Connection) -> str:
    """The most recent failed nodes, each linking to its log and to its run's timeline."""
    rows = queries.failed_nodes(conn, FAILURES)
    if not rows:
        return "<p class='empty'>no failed nodes</p>"
    lines = []
    for r in rows:
        run = _link(_timeline_href(r["run_id"]), r["run_id"])
        log = _link(log_href(r["run_id"], r["node_id"]), "log")
        error = escape((r["error"] or "")[:300])
        lines.append(
            f"<tr><td>{run}</td><td>{escape(r['node_id'])}</td><td>{_cell(r['finished_at'])}</td>"
            f"<td class='error'>{error}</td><td>{log}</td></tr>"
        )
    head = "<tr><th>run_id</th><th>node</th><th>finished_at</th><th>error</th><th></th></tr>"
    return f"<table class='failures'><thead>{head}</thead><tbody>{''.join(lines)}</tbody></table>"


def _cell(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return escape(value.strftime("%Y-%m-%d %H:%M:%S %Z"))
    return "" if value is None else escape(str(value))


def _table(rows: list[dict[str, Any]], columns: list[str], empty: str, linked: bool = False) -> str:
    """An HTML table; with `linked`, each run id opens that run's timeline."""
    if not rows:
        return f"<p class='empty'>{escape(empty)}</p>"
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='{escape(str(r.get(c)))}'>{_cell(r.get(c))}</td>"
            if c == "status"
            else f"<td>{_link(_timeline_href(r[c]), r[c])}</td>"
            if c == "run_id" and linked
            else f"<td>{_cell(r.get(c))}</td>"
            for c in columns
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(
    conn: psycopg.Connection, project: str, logout: bool = False, run_id: str | None = None
) -> str:
    """The whole page (with a "log out" link when API keys guard it); `run_id` picks the run
    whose nodes the slowest-nodes chart and the timeline show."""
    runs = queries.list_runs(conn, 15)
    failing = [
        t for t in queries.test_history(conn, limit_runs=5) if t["status"] in ("fail", "error")
    ]
    freshness = queries.source_freshness(conn)
    anomalies = queries.anomaly_count(conn)
    # "<" escaped: no node name or error text can end the script element or open a comment
    data = json.dumps(charts(conn, run_id)).replace("<", "\\u003c")
    return PAGE.format(
        project=escape(project),
        runs=_table(
            runs,
            ["run_id", "status", "trigger", "started_at", "duration_ms", "nodes", "tests_failed"],
            "no runs yet",
            linked=True,
        ),
        failures=_failures(conn),
        failing=_table(
            failing, ["run_id", "test", "status", "failures", "message"], "no failing tests"
        ),
        freshness=_table(
            freshness,
            ["source", "table_name", "last_landed_at", "last_loaded_at", "partitions", "rows"],
            "nothing landed yet",
        ),
        anomalies=f"{anomalies} in the last 7 days (<a href='/anomalies'>/anomalies</a>)",
        data=data,
        logout=' <a href="/logout">log out</a>' if logout else "",
    )


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{project}: millpond dashboard</title>
<link rel="stylesheet" href="/static/dashboard.css">
</head><body>
<header><h1>{project}</h1>
<nav><a href="/docs">API</a> <a href="/metrics">metrics</a>{logout}</nav></header>
<section class="charts">
  <figure id="chart-runs"><figcaption>Runs: duration and status
    <span class="legend" id="legend-runs"></span></figcaption><div class="chart"></div></figure>
  <figure id="chart-slowest"><figcaption>Slowest nodes <span class="sub"></span></figcaption>
    <div class="chart"></div></figure>
  <figure id="chart-tables"><figcaption>Rows per table <span class="sub"></span></figcaption>
    <div class="chart"></div></figure>
  <figure id="timeline" class="wide"><figcaption>Timeline <span class="sub"></span></figcaption>
    <div class="chart"></div></figure>
</section>
<section><h2>Recent runs</h2>{runs}</section>
<section><h2>Failed nodes</h2>{failures}</section>
<section><h2>Failing tests</h2>{failing}</section>
<section><h2>Anomalies</h2><p>{anomalies}</p></section>
<section><h2>Freshness per source table</h2>{freshness}</section>
<script id="dashboard-data" type="application/json">{data}</script>
<script src="/static/dashboard.js"></script>
</body></html>
"""
