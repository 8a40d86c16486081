"""What a notification says about a run, independent of the webhook's format."""

from __future__ import annotations

from typing import Any

from millpond.core.config import MillpondConfig, NotifyEvent
from millpond.core.masking import mask

MAX_ERROR_CHARS = 500


def dashboard_url(config: MillpondConfig) -> str:
    for target in config.notify:
        if target.dashboard_url:
            return target.dashboard_url
    return f"http://{config.serve.host}:{config.serve.port}/"


def build_report(
    config: MillpondConfig,
    run_id: str,
    status: str,
    error: str | None,
    outcomes: list[Any],
    *,
    rows: int,
    duration_ms: int | None,
    anomalies: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """run id, status, failed nodes with their errors, failing tests, rows, duration, link,
    and the monitors' anomalies (volume and freshness).

    `rows` and `duration_ms` are the run's as the ledger records them (the caller computes
    them once for both: millpond.runtime.totals), so a webhook never tells another story
    than `/runs/{id}` and the summary."""
    failed_tests = [
        {"node": o.node_id, "test": t.get("test"), "status": t.get("status")}
        for o in outcomes
        for t in (o.detail or {}).get("tests", [])
        if t.get("status") in ("fail", "error")
    ]
    link = dashboard_url(config)
    return {
        "project": config.project,
        "run_id": run_id,
        "status": status,
        "error": mask(error)[:MAX_ERROR_CHARS] if error else None,
        "failed_nodes": [
            {"node": o.node_id, "error": mask(o.error or "")[:MAX_ERROR_CHARS]}
            for o in outcomes
            if o.status == "failed"
        ],
        "failed_tests": failed_tests,
        "rows": rows,
        "duration_ms": duration_ms,
        "duration_seconds": None if duration_ms is None else round(duration_ms / 1000, 1),
        "dashboard_url": link,
        "run_url": link.rstrip("/") + f"/runs/{run_id}",
        "anomalies": [_masked(a) for a in anomalies or []],
    }


def alert_report(config: MillpondConfig, anomalies: list[dict[str, Any]]) -> dict[str, Any]:
    """Findings made outside a run (`millpond check-freshness`): no run id, no status of a
    run; the same keys otherwise, so a receiver reads both alike."""
    link = dashboard_url(config)
    return {
        "project": config.project,
        "run_id": None,
        "status": "alert",
        "error": None,
        "failed_nodes": [],
        "failed_tests": [],
        "rows": 0,
        "duration_ms": None,
        "duration_seconds": None,
        "dashboard_url": link,
        "run_url": link.rstrip("/") + "/anomalies",
        "anomalies": [_masked(a) for a in anomalies],
    }


def _masked(anomaly: dict[str, Any]) -> dict[str, Any]:
    return {**anomaly, "message": mask(str(anomaly.get("message", "")))[:MAX_ERROR_CHARS]}


def events_of(report: dict[str, Any]) -> set[NotifyEvent]:
    """Which `on:` events this report raises (a run's outcome; the monitors' findings)."""
    events: set[NotifyEvent] = set()
    if report["status"] != "alert":
        events.add("success" if report["status"] == "success" else "failure")
    if report["failed_tests"]:
        events.add("test_failure")
    monitors = {a.get("monitor") for a in report.get("anomalies", [])}
    if "volume" in monitors:
        events.add("anomaly")
    if "freshness" in monitors:
        events.add("freshness")
    return events
