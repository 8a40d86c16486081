"""One `just bench` session: every case at every scale on the same files, repeated, summarised.

Order per scale and repeat: cold run, warm run (nothing new), one `dbt build` on the warehouse
the runs left, bare DuckDB, DuckDB's COPY, dlt. The memory case (a cold run under a DuckDB
memory limit) runs once, at the largest scale, right after its first cold run. After every case
the partial results go to `checkpoint` (the report is rewritten, marked partial), so a session
stopped early still leaves what it measured. A failing case stops the session with its output.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import cases, report
from harness.measure import spread

Log = Callable[[str], None]
Checkpoint = Callable[[dict[str, Any]], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians (min, max) of the numbers of repeated runs of one case; the last run's rest."""
    summary: dict[str, Any] = dict(samples[-1])
    for key, value in samples[-1].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            summary[key] = spread([float(s[key]) for s in samples])
    if "stages" in samples[-1]:
        names = {name for s in samples for name in s["stages"]}
        for field in ("wall_s", "node_s"):
            summary[f"stage_{field}"] = {
                name: spread([s["stages"][name][field] for s in samples if name in s["stages"]])
                for name in sorted(names)
            }
    return summary


def _steps(project: Path) -> list[tuple[str, Callable[[], dict[str, Any] | None]]]:
    return [
        ("millpond_cold", lambda: cases.millpond_run(project, cold=True)),
        ("millpond_warm", lambda: cases.millpond_run(project, cold=False)),
        ("dbt_build", lambda: cases.dbt_build(project)),
        ("baseline", lambda: cases.baseline(project)),
        ("duckdb_copy", lambda: cases.duckdb_copy(project)),
        ("dlt", lambda: cases.dlt_load(project)),
    ]


def run_session(
    scales: list[str],
    repeat: int,
    work: Path,
    memory_limit: str | None,
    checkpoint: Checkpoint = lambda results: None,
    log: Log = _stderr,
) -> dict[str, Any]:
    """Measure everything; returns the results dict `report` renders (goals included)."""
    started = time.perf_counter()
    results: dict[str, Any] = {"scales": {}, "complete": False}
    largest = max(scales, key=float)
    projects = {}

    def save() -> None:
        results["goals"] = report.goals(results)
        results["total_s"] = round(time.perf_counter() - started, 1)
        checkpoint(results)

    try:
        for scale in scales:
            log(f"scale {scale}: preparing the export files under {work}")
            project = projects[scale] = cases.prepare(work, scale)
            samples: dict[str, list[dict[str, Any]]] = {c: [] for c in report.CASES}
            entry: dict[str, Any] = {"cases": {}, "missing": {}}
            results["scales"][scale] = entry
            for attempt in range(1, repeat + 1):
                for name, step in _steps(project):
                    log(f"scale {scale} [{attempt}/{repeat}] {name} ...")
                    result = step()
                    if result is None:
                        entry["missing"][name] = "dlt: not installed"
                    else:
                        samples[name].append(result)
                        entry["cases"][name] = _summarise(samples[name])
                        log(f"  {result['seconds']:.1f} s, peak RSS {result['peak_rss_mb']:.0f} MB")
                    save()
            # Last: it starts from an empty state again, and the warm run must follow a cold
            # one directly (as a user's second run does), its ledger server still up.
            if scale == largest and memory_limit and samples["millpond_cold"]:
                log(f"scale {scale}: memory case, warehouse.memory_limit {memory_limit} ...")
                memory = cases.memory_case(project, memory_limit)
                unlimited = samples["millpond_cold"][0]["peak_rss_mb"]
                memory.update(scale=scale, unlimited_peak_rss_mb=unlimited)
                results["memory"] = memory
                log(f"  {memory['status']}, peak RSS {memory.get('peak_rss_mb', '-')} MB")
                save()
        results["complete"] = True
    finally:
        from millpond.metadata.embedded import stop_embedded

        for project in projects.values():
            stop_embedded(project / ".millpond" / "pg")
        save()  # stopped early (a failing case, Ctrl-C, SIGTERM): the report says partial
    return results
