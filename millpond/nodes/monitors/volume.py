"""Volume anomalies: a source table's landing (checked by its extract node) and the published
marts' row counts (checked by the publish node before it publishes), each against the history
of earlier successful runs in the ledger."""

from __future__ import annotations

from typing import Any

from millpond.core.logs import logger
from millpond.core.monitoring import VolumeSettings, table_volume
from millpond.core.registry import NodeReport, NodeScope
from millpond.metadata import reads
from millpond.metadata.ledger import LedgerUnavailableError
from millpond.metadata.records import AnomalyFound
from millpond.nodes.monitors.stats import Verdict, judge


class VolumeAnomaly(Exception):
    """An anomaly at `severity: error`: the node fails, and the run publishes nothing.

    Running the node again reads the same history and the same count: not retryable."""

    retryable = False


def check_landing(
    scope: NodeScope, source: str, table: str, rows: int, report: NodeReport
) -> AnomalyFound | None:
    """Judge the rows this run landed into a table; record and report an anomaly, and raise
    `VolumeAnomaly` when its severity is error (the partition stays landed: see
    docs/monitoring.md)."""
    tables = getattr(scope.config.sources[source], "tables", {})
    settings = table_volume(scope.config.monitors, tables.get(table))
    if settings is None:
        return None
    subject = f"{source}.{table}"
    history = _history(
        subject,
        lambda: reads.landing_history(scope.ledger, source, table, scope.run_id, settings.runs),
    )
    if history is None:
        return None
    verdict = judge(rows, history, settings)
    what = f"{subject} landed {rows:,} rows"
    return _found(scope, "source_table", subject, what, verdict, settings, report)


def check_marts(
    scope: NodeScope, schemas: tuple[str, ...], publish_kind: str, report: NodeReport
) -> list[AnomalyFound]:
    """Judge the row count of each relation of the published schemas this run recorded;
    record and report the anomalies, and raise `VolumeAnomaly` if one is at error severity
    (before anything is published)."""
    volume = scope.config.monitors.volume
    if not volume.enabled or not volume.marts:
        return []
    counts = _history("marts", lambda: reads.run_row_counts(scope.ledger, scope.run_id))
    if not counts:
        return []
    found: list[AnomalyFound] = []
    errors: list[str] = []
    for relation, rows in sorted(counts.items()):
        settings = volume.for_relation(relation)
        if settings is None or relation.split(".", 1)[0] not in schemas:
            continue
        history = _history(
            relation,
            lambda r=relation, s=settings: reads.mart_history(
                scope.ledger, r, scope.run_id, publish_kind, s.runs
            ),
        )
        if history is None:
            continue
        verdict = judge(rows, history, settings)
        try:
            anomaly = _found(
                scope, "mart", relation, f"{relation} has {rows:,} rows", verdict, settings, report
            )
        except VolumeAnomaly as exc:
            errors.append(str(exc))
            continue
        if anomaly is not None:
            found.append(anomaly)
    if errors:
        raise VolumeAnomaly("; ".join(errors) + " (monitors.volume severity error: not published)")
    return found


def _history(subject: str, read: Any) -> Any:
    """A ledger read, or None (said once in the log) when the ledger cannot answer now."""
    try:
        return read()
    except LedgerUnavailableError as exc:
        logger.warning(f"volume of {subject} not checked: the ledger cannot answer ({exc})")
        return None


def _found(
    scope: NodeScope,
    subject_kind: str,
    subject: str,
    what: str,
    verdict: Verdict,
    settings: VolumeSettings,
    report: NodeReport,
) -> AnomalyFound | None:
    if not verdict.anomalous:
        return None
    assert verdict.median is not None and verdict.low is not None and verdict.high is not None
    message = (
        f"{what}; the last {verdict.history} runs had a median of {verdict.median:,.0f} "
        f"(expected {verdict.low:,.0f} to {verdict.high:,.0f})"
    )
    anomaly = AnomalyFound(
        scope.run_id,
        "volume",
        subject_kind,
        subject,
        settings.severity,
        message,
        observed=verdict.observed,
        low=verdict.low,
        high=verdict.high,
        median=verdict.median,
        mad=verdict.mad,
        history=verdict.history,
    )
    scope.ledger.write(anomaly)
    report.detail.setdefault("anomalies", []).append(anomaly.summary())
    if settings.severity == "error":
        raise VolumeAnomaly(f"volume anomaly: {message}")
    report.detail.setdefault("warnings", []).append(f"volume anomaly: {message}")
    logger.warning(f"volume anomaly: {message}")
    return anomaly
