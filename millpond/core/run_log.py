"""Reading a run's JSON log (.millpond/logs/<run>.jsonl) back as readable lines.

Shared by `millpond logs` and the API's `/runs/{run_id}/nodes/{node_id}/log` (the dashboard's
failures link there), so both show a node's lines the same way. Every record carries its run_id
and node_id (millpond.core.logs), and secrets were masked when it was written."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def records(path: Path) -> Iterator[dict[str, Any]]:
    """loguru's serialized records; a line cut short by a crash is skipped, not fatal."""
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                yield json.loads(line)["record"]
            except (ValueError, KeyError):
                continue


def node_of(record: dict[str, Any]) -> str:
    """The node a record was logged by ("-" for the run's own lines)."""
    return str(record.get("extra", {}).get("node_id", "-"))


def line(record: dict[str, Any]) -> str:
    """`HH:MM:SS LEVEL   node  message` (plus the exception, if one was logged)."""
    at = dt.datetime.fromtimestamp(record["time"]["timestamp"]).strftime("%H:%M:%S")
    text = f"{at} {record['level']['name']:<7} {node_of(record)} {record['message']}"
    exc = record.get("exception")
    if exc and exc.get("type"):
        text += f"\n    {exc['type']}: {exc.get('value')}"
    return text
