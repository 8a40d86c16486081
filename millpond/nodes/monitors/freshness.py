"""Freshness alerts: a source table that has not landed for longer than its `expect_every`.

Checked when a run closes (a run with nothing new included: nothing landing is exactly what
this catches) and by `millpond check-freshness` (cron it where no run is scheduled). The
last landing is the ledger's latest partition of the table; a table that never landed is
measured from its first extract attempt, so a table added today is not stale today.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from millpond.core.config import MillpondConfig
from millpond.core.monitoring import table_cadence
from millpond.metadata import reads
from millpond.metadata.ledger import Ledger
from millpond.metadata.records import AnomalyFound


def cadences(config: MillpondConfig) -> dict[tuple[str, str], timedelta]:
    """Every configured source table whose freshness is checked, with its `expect_every`."""
    found = {}
    for source, source_config in sorted(config.sources.items()):
        for table, table_config in sorted(getattr(source_config, "tables", {}).items()):
            cadence = table_cadence(config.monitors, table_config)
            if cadence is not None:
                found[(source, table)] = cadence
    return found


def check_freshness(
    config: MillpondConfig, ledger: Ledger, run_id: str | None, now: datetime | None = None
) -> list[AnomalyFound]:
    """The freshness alerts of every checked table, recorded in the ledger (under `run_id`,
    or none for `millpond check-freshness`). Raises LedgerUnavailableError when the ledger
    cannot answer (a stale answer would be a false alarm or a missed one)."""
    expected = cadences(config)
    if not expected:
        return []
    now = now or datetime.now(UTC)
    landed = reads.last_landings(ledger)
    node_ids = [f"extract.{s}.{t}" for s, t in expected]  # millpond.nodes.extract's ids
    first = reads.first_attempts(ledger, node_ids)
    severity = config.monitors.freshness.severity
    alerts = []
    for (source, table), cadence in expected.items():
        last = landed.get((source, table))
        since = last or first.get(f"extract.{source}.{table}")
        if since is None or now - since <= cadence:
            continue  # never asked for yet, or fresh
        age = _span(now - since)
        if last is None:
            message = (
                f"{source}.{table} has never landed since its first run {age} ago "
                f"(expected every {_span(cadence)})"
            )
        else:
            message = (
                f"{source}.{table}: no new landing for {age} (last {last:%Y-%m-%d %H:%M %Z}; "
                f"expected every {_span(cadence)})"
            )
        alert = AnomalyFound(
            run_id,
            "freshness",
            "source_table",
            f"{source}.{table}",
            severity,
            message,
            last_landed_at=last,
            expect_every_seconds=cadence.total_seconds(),
            at=now,
        )
        ledger.write(alert)
        alerts.append(alert)
    return alerts


def _span(delta: timedelta) -> str:
    """A duration as a person says it: 2d 3h, 6h 5m, 45m, 30s."""
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m")] if seconds >= 60 else [(secs, "s")]
    shown = [f"{n}{u}" for n, u in parts if n][:2]
    return " ".join(shown) or "0s"
