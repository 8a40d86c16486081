"""Run notifications: a summary of each run posted to the webhooks of `notify:` in millpond.yml.

`notify_run` is the one call the run lifecycle makes (millpond.runtime.lifecycle.close_run). It
never raises: a webhook that is down, slow or refusing costs a few retries and is recorded in
the run's ledger summary (`summary.notifications`), and the run keeps its own status.
"""

from __future__ import annotations

from typing import Any

from millpond.core.config import MillpondConfig
from millpond.core.logs import logger
from millpond.notify.report import alert_report, build_report, events_of
from millpond.notify.send import deliver


def notify_run(
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
    """Tell every configured webhook that asked for this run's events; returns what to add to
    the run's ledger summary (`{"notifications": [...]}`, or nothing when none is configured).

    `rows` and `duration_ms` are the ledger's figures for the run (see `build_report`);
    `anomalies` what the monitors found (the `anomaly` and `freshness` events)."""
    if not config.notify:
        return {}
    return _send(
        config,
        lambda: build_report(
            config,
            run_id,
            status,
            error,
            outcomes,
            rows=rows,
            duration_ms=duration_ms,
            anomalies=anomalies or [],
        ),
    )


def notify_alerts(config: MillpondConfig, anomalies: list[dict[str, Any]]) -> dict[str, Any]:
    """Tell the webhooks that asked for `freshness` (or `anomaly`) about findings made outside
    a run (`millpond check-freshness`); returns `{"notifications": [...]}`, never raises."""
    if not config.notify or not anomalies:
        return {}
    return _send(config, lambda: alert_report(config, anomalies))


def _send(config: MillpondConfig, make_report: Any) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    try:
        report = make_report()
        events = events_of(report)
        for target in config.notify:
            wanted = [e for e in target.on if e in events]
            if wanted:
                results.append(deliver(target, report, wanted))
    except Exception as exc:  # a notification must never fail the run
        logger.warning(f"notifications failed: {type(exc).__name__}")
        results.append({"ok": False, "error": f"notify failed: {type(exc).__name__}"})
    return {"notifications": results}
