"""Files a landing rejected, kept in the lake per run so the load node (another process under
Airflow) can report them after loading the table's good files.

    rejected/<source>/<table>/run=<run_id>.json

A rejected file is never marked as landed (no manifest lists it), so it is tried again on
every run until it is corrected (new content) or its table's settings let it in.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from millpond.ingest.lake import Lake


@dataclass(frozen=True)
class Rejection:
    """A file kept out of its table, and why (file, line, column, types, the setting)."""

    file: str
    fingerprint: str
    reason: str
    bad_rows: int = 0


def _path(lake: Lake, source: str, table: str, run_id: str) -> str:
    return lake.path("rejected", source, table, f"run={run_id}.json")


def record_rejections(
    lake: Lake, source: str, table: str, run_id: str, rejected: list[Rejection]
) -> None:
    """Replace this run's rejections of the table (a retry of the run rewrites them)."""
    path = _path(lake, source, table, run_id)
    if not rejected:
        if lake.exists(path):
            lake.fs.delete_file(path)
        return
    lake.fs.create_dir(lake.path("rejected", source, table), recursive=True)
    lake.write_text_atomic(path, json.dumps([asdict(r) for r in rejected], indent=2))


def rejections_of_run(lake: Lake, source: str, table: str, run_id: str) -> list[Rejection]:
    path = _path(lake, source, table, run_id)
    if not lake.exists(path):
        return []
    return [Rejection(**r) for r in json.loads(lake.read_text(path))]
