"""`just bench`: `millpond run` against bare DuckDB on the same files, in the same session.

For each scale: a fresh project under .millpond/bench/sf<scale>/ (demo data generated once and
reused), then a cold `millpond run` (empty lake, warehouse and ledger; the Prefect server already
up), a warm rerun (nothing new to land or load) and `bench/baseline.py` (bare DuckDB: load +
the same compiled dbt SQL + the same tests + snapshot). Reports wall times and the ratio;
absolute seconds vary with the machine, the ratio is the figure to watch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def prepare(scale: str) -> Path:
    project = REPO / ".millpond" / "bench" / f"sf{scale}"
    inbox = project / "inbox" / "erp"
    project.mkdir(parents=True, exist_ok=True)
    text = (REPO / "millpond.yml").read_text()
    text = text.replace("project_dir: transform", f"project_dir: {REPO / 'transform'}")
    (project / "millpond.yml").write_text(text)
    if not inbox.is_dir():
        subprocess.run(
            [str(BIN / "millpond"), "demo-data", "--scale", scale],
            check=True,
            cwd=project,
        )
    (project / "transform").unlink(missing_ok=True)
    (project / "transform").symlink_to(REPO / "transform")
    return project


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return elapsed, result.stdout


def stage_seconds(summary: str) -> dict[str, float]:
    """Node time per node kind, summed from the summary table `millpond run` prints."""
    stages: dict[str, float] = {}
    for line in summary.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) < 8 or not cells[6].replace(",", "").isdigit():
            continue
        kind = cells[1].split(".", 1)[0]
        stages[kind] = stages.get(kind, 0.0) + int(cells[6].replace(",", "")) / 1000
    return stages


def main(scales: list[str]) -> None:
    from flows.server import ensure_server
    from millpond.core.config import load_config

    # The repo's own local Prefect server (started if needed): bench projects are deleted and
    # recreated, so a server started under one of them would lose its home mid-run.
    os.environ["PREFECT_API_URL"] = ensure_server(load_config(REPO / "millpond.yml"))
    rows = []
    for scale in scales:
        project = prepare(scale)
        shutil.rmtree(project / ".millpond", ignore_errors=True)
        cold, summary = timed([str(BIN / "millpond"), "run"], project)
        stages = stage_seconds(summary)
        warm, _ = timed([str(BIN / "millpond"), "run"], project)
        base_wall, out = timed(
            [
                str(BIN / "python"),
                str(REPO / "bench" / "baseline.py"),
                str(project),
                str(project / ".baseline"),
            ],
            project,
        )
        base = json.loads(out.strip().splitlines()[-1])
        rows.append((scale, cold, warm, base["seconds"], base_wall, stages))
    header = ["scale", "millpond cold", "millpond rerun", "bare duckdb", "ratio"]
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, [6, 14, 15, 12, 6], strict=True)))
    for scale, cold, warm, base, _, _ in rows:
        print(f"{scale:>6} {cold:>13.1f}s {warm:>14.1f}s {base:>11.1f}s {cold / base:>5.1f}x")
    print(
        "\nnode time per stage in the cold run (seconds, summed over nodes running concurrently):"
    )
    for scale, *_, stages in rows:
        print(f"{scale:>6} " + "  ".join(f"{k} {v:.1f}s" for k, v in stages.items()))
    print("bare duckdb = load + compiled dbt SQL + tests + snapshot, timed inside one process;")
    print(
        "millpond = the whole `millpond run` command (process start, dbt parse, Prefect, ledger)."
    )


if __name__ == "__main__":
    main(sys.argv[1:] or ["0.1"])
