"""Webhook bodies: millpond's own JSON, a Slack message, a Teams MessageCard."""

from __future__ import annotations

from typing import Any

from millpond.core.config import NotifyEvent


def headline(report: dict[str, Any]) -> str:
    if report["run_id"] is None:  # findings outside a run (millpond check-freshness)
        count = len(report["anomalies"])
        return f"millpond {report['project']}: {count} freshness alert{'s' * (count != 1)}"
    mark = "succeeded" if report["status"] == "success" else "FAILED"
    took = "" if report["duration_seconds"] is None else f" in {report['duration_seconds']} s"
    return (
        f"millpond {report['project']}: run {report['run_id']} {mark}{took}, "
        f"{report['rows']:,} rows loaded"
    )


def details(report: dict[str, Any]) -> list[str]:
    lines = [f"{n['node']}: {n['error']}" for n in report["failed_nodes"]]
    lines += [f"test {t['test']} ({t['status']})" for t in report["failed_tests"]]
    lines += [
        f"{a['monitor']} ({a['severity']}): {a['message']}" for a in report.get("anomalies", [])
    ]
    return lines


def body(fmt: str, report: dict[str, Any], events: list[NotifyEvent]) -> dict[str, Any]:
    if fmt == "slack":
        text = "\n".join([headline(report), *details(report), f"<{report['run_url']}|run details>"])
        return {"text": text}
    if fmt == "teams":
        return {
            "@type": "MessageCard",
            "@context": "http://schema.org/extensions",
            "summary": headline(report),
            "themeColor": {"success": "2EB67D", "alert": "ECB22E"}.get(report["status"], "E01E5A"),
            "title": headline(report),
            "text": "<br>".join(details(report)) or "all nodes succeeded",
            "potentialAction": [
                {
                    "@type": "OpenUri",
                    "name": "Run details",
                    "targets": [{"os": "default", "uri": report["run_url"]}],
                }
            ],
        }
    return {**report, "events": events}
