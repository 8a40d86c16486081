"""How the last reads of an incremental table went, kept in the lake so that a cursor which
stops moving while its source keeps sending records is noticed across runs (and machines):

    reads/<source>/<table>.json    the last KEPT reads, oldest first

Nothing here decides what lands: the file is what the stall check counts (landing records a
read of every table whose source asks for the check). Losing or damaging it costs the count of
stalled runs so far, never data: a damaged file is named in a warning and started afresh.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from typing import Any

from millpond.core.logs import logger
from millpond.ingest.lake import Lake

KEPT = 20


@dataclass(frozen=True)
class Read:
    """One run's read of a table: where its cursor was before and after, what the source
    sent, what was dropped as landed already, what landed, and whether it stalled (fresh
    records came, the cursor did not move)."""

    run_id: str
    at: str
    cursor_from: Any
    cursor_to: Any
    returned: int
    fresh: int
    dropped: int
    landed: int
    stalled: bool


def reads_path(lake: Lake, source: str, table: str) -> str:
    return lake.path("reads", source, f"{table}.json")


def reads_of(lake: Lake, source: str, table: str) -> list[Read]:
    """The table's recorded reads, oldest first ([] before the first, or for a damaged file)."""
    path = reads_path(lake, source, table)
    if not lake.exists(path):
        return []
    try:
        return [Read(**entry) for entry in json.loads(lake.read_text(path))]
    except (ValueError, TypeError) as exc:
        logger.warning(
            f"{path}: damaged ({exc}); the count of runs with a stalled cursor starts afresh"
        )
        return []


def record_read(lake: Lake, source: str, table: str, read: Read) -> list[Read]:
    """Add this run's read (a retry of the run replaces its earlier attempt's) and return
    the table's reads, oldest first. Callers hold the table's extract lock."""
    history = [r for r in reads_of(lake, source, table) if r.run_id != read.run_id]
    history = [*history, read][-KEPT:]
    lake.fs.create_dir(lake.path("reads", source), recursive=True)
    text = json.dumps([asdict(r) for r in history], indent=2, default=str)
    lake.write_text_atomic(reads_path(lake, source, table), text)
    return history


def stalled_runs(history: list[Read]) -> int:
    """How many of the latest reads in a row stalled."""
    count = 0
    for read in reversed(history):
        if not read.stalled:
            break
        count += 1
    return count


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()
