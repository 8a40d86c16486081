"""`millpond logs RUN [NODE]`: a run's JSON log (.millpond/logs/<run>.jsonl) as readable lines.

Every record in the file carries its run_id and node_id (millpond.core.logs), whichever thread
or process wrote it, so one node's lines can be read on their own, under Prefect or Airflow.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated

import typer

from millpond.cli.app import ConfigOption
from millpond.cli.common import fail, load, out
from millpond.core.run_log import line, node_of, records

LEVELS = ["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"]


def logs(
    run_id: Annotated[str, typer.Argument(help="a run id (see `millpond status`), or `last`")],
    node_id: Annotated[
        str | None, typer.Argument(help="only this node's lines, e.g. load.erp.orders")
    ] = None,
    level: Annotated[
        str, typer.Option(help="lowest level shown: DEBUG, INFO, WARNING or ERROR")
    ] = "DEBUG",
    config_path: ConfigOption = None,
) -> None:
    """Print a run's log, or one node's part of it, one readable line per record.

    Examples: `millpond logs last`; `millpond logs 20261202T061500Z-1a2b3c dbt.fct_orders`;
    `millpond logs last load.erp.orders --level WARNING`."""
    config = load(config_path, needs=("state_dir",), command="logs")
    if level.upper() not in LEVELS:
        fail(f"--level {level!r}: one of {', '.join(LEVELS)}")
    path = _log_file(config.logs_dir, run_id)
    found = list(records(path))
    if node_id is not None:
        nodes = sorted({node_of(r) for r in found} - {"-"})
        if node_id not in nodes:
            close = difflib.get_close_matches(node_id, nodes, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            fail(
                f"run {path.stem} has no log lines of node {node_id!r}{hint} "
                f"(nodes in its log: {', '.join(nodes) or 'none'})"
            )
        found = [r for r in found if node_of(r) == node_id]
    lowest = LEVELS.index(level.upper())
    for record in found:
        name = record["level"]["name"]
        if name in LEVELS and LEVELS.index(name) < lowest:
            continue
        out.print(line(record), markup=False, highlight=False)


def _log_file(logs_dir: Path, run_id: str) -> Path:
    """The run's JSON log; `last` is the newest. An unknown run says which runs have logs."""
    files = sorted(logs_dir.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    if run_id == "last":
        if not files:
            fail(f"no run logs in {logs_dir} yet")
        return files[-1]
    path = logs_dir / f"{run_id}.jsonl"
    if "/" in run_id or not path.is_file():
        recent = ", ".join(p.stem for p in files[-3:][::-1]) or "none"
        fail(f"no log of run {run_id!r} in {logs_dir} (most recent: {recent})")
    return path
