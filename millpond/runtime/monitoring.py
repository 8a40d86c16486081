"""What the monitors found in a run, gathered when it closes: the volume anomalies its nodes
recorded (in this process's outcomes, or in the ledger when its nodes ran elsewhere, as under
Airflow) and the freshness alerts checked now (millpond.nodes.monitors). Never raises: a
monitor that cannot answer is a warning, not a failed run. And `millpond check-freshness`:
the same freshness check without a run (`freshness_now`)."""

from __future__ import annotations

from typing import Any

from millpond.core.config import MillpondConfig
from millpond.core.logs import logger
from millpond.core.masking import mask
from millpond.metadata import reads
from millpond.metadata.ledger import LedgerUnavailableError
from millpond.metadata.records import AnomalyFound
from millpond.nodes.monitors.freshness import check_freshness
from millpond.notify import notify_alerts
from millpond.runtime.context import RunContext


def run_findings(ctx: RunContext) -> list[dict[str, Any]]:
    """Every anomaly of the run, as a webhook and the run's ledger summary tell them."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for outcome in ctx.outcomes.values():
        for anomaly in (outcome.detail or {}).get("anomalies", []):
            found[(anomaly["monitor"], anomaly["subject"])] = anomaly
    try:
        for alert in check_freshness(ctx.config, ctx.ledger, ctx.run_id):
            logger.warning(f"freshness: {alert.message}")
            found[(alert.monitor, alert.subject)] = alert.summary()
        for row in reads.run_anomalies(ctx.ledger, ctx.run_id):
            row["last_landed_at"] = _text(row["last_landed_at"])
            found.setdefault((row["monitor"], row["subject"]), row)
    except LedgerUnavailableError as exc:
        logger.warning(f"freshness not checked: the ledger cannot answer ({exc})")
    except Exception as exc:  # a monitor must never keep a run from closing
        logger.warning(f"monitors failed: {type(exc).__name__}: {mask(str(exc))}")
    return [found[key] for key in sorted(found)]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def freshness_now(config: MillpondConfig) -> tuple[list[AnomalyFound], list[dict[str, Any]]]:
    """`millpond check-freshness`: the stale tables, recorded without a run and sent to the
    webhooks that asked for `freshness`; returns the alerts and the deliveries. Raises
    LedgerUnavailableError when the ledger cannot answer."""
    ctx = RunContext(config, "check-freshness", orchestrator="cli", sources_only=True)
    try:
        alerts = check_freshness(config, ctx.ledger, None)
    finally:
        ctx.close()
        ctx.ledger.close()
    sent = notify_alerts(config, [a.summary() for a in alerts])
    return alerts, sent.get("notifications", [])
