"""millpond's own account of a run: wall time and node time per stage, from the ledger.

A stage is a node kind (extract, load, dbt, publish). Node time is summed over the stage's
nodes (four extracts at once on two cores count four times); wall time is from the first node
of the stage starting to the last one finishing, which is what a user waits for. Only the
latest attempt of each node counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from millpond.core.config_loading import load_config
from millpond.metadata.db import connect, resolve_url

STAGES = ("extract", "load", "dbt", "publish")
# `ingest` is extract and load together, from the first extract start to the last load end.

_LATEST = """
SELECT DISTINCT ON (node_id) node_id, kind, status, started_at, finished_at, duration_ms
FROM millpond.node_runs WHERE run_id = %s
ORDER BY node_id, attempt DESC
"""


def _stage(node_id: str, kind: str | None) -> str:
    head = (kind or node_id).split(".", 1)[0]
    return "dbt" if head.startswith("dbt") else head


def latest_run(project: Path) -> dict[str, Any]:
    """The newest run of the project: its id, status, wall seconds and per-stage times."""
    config = load_config(project / "millpond.yml")
    url = resolve_url(config.metadata.url, config.state)
    with connect(url) as conn:
        run = conn.execute(
            "SELECT run_id, status, EXTRACT(EPOCH FROM (finished_at - started_at)) "
            "FROM millpond.runs ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
        if run is None:
            raise RuntimeError(f"{project}: the ledger has no run")
        nodes = conn.execute(_LATEST, (run[0],)).fetchall()
    stages: dict[str, dict[str, Any]] = {}
    for node_id, kind, status, started, finished, duration_ms in nodes:
        stage = stages.setdefault(
            _stage(node_id, kind),
            {"nodes": 0, "node_s": 0.0, "first": None, "last": None, "statuses": {}},
        )
        stage["nodes"] += 1
        stage["node_s"] += (duration_ms or 0) / 1000
        stage["statuses"][status] = stage["statuses"].get(status, 0) + 1
        if started is not None:
            stage["first"] = started if stage["first"] is None else min(stage["first"], started)
        if finished is not None:
            stage["last"] = finished if stage["last"] is None else max(stage["last"], finished)
    breakdown = {}
    for name, stage in stages.items():
        wall = 0.0
        if stage["first"] is not None and stage["last"] is not None:
            wall = (stage["last"] - stage["first"]).total_seconds()
        breakdown[name] = {
            "nodes": stage["nodes"],
            "node_s": round(stage["node_s"], 3),
            "wall_s": round(wall, 3),
            "statuses": stage["statuses"],
        }
    ingest = [stages[s] for s in ("extract", "load") if s in stages and stages[s]["first"]]
    if ingest:  # landing and loading overlap (a table loads while others still land)
        first = min(s["first"] for s in ingest)
        last = max(s["last"] for s in ingest if s["last"] is not None)
        breakdown["ingest"] = {
            "nodes": sum(s["nodes"] for s in ingest),
            "node_s": round(sum(s["node_s"] for s in ingest), 3),
            "wall_s": round((last - first).total_seconds(), 3),
            "statuses": {},
        }
    return {
        "run_id": run[0],
        "status": run[1],
        "run_s": round(float(run[2] or 0), 3),
        "stages": breakdown,
    }
