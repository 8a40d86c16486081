"""What `just bench` runs, each case in its own process so its peak RSS is its own.

Every case of a scale works on the same generated export files (one inbox per scale): a cold
`millpond run` (empty lake, warehouse and ledger), a warm one (nothing new), one `dbt build` of
the same project on the warehouse millpond loaded, bare DuckDB (bench/baseline.py), DuckDB's own
CSV-to-Parquet COPY (the landing anchor), dlt's Arrow/Parquet route into DuckDB, and the memory
case (a cold run under a DuckDB memory limit smaller than the lineitem file).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from harness.ledger import latest_run
from harness.measure import CaseFailed, run_measured

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
DLT_VENV = Path.home() / ".cache" / "millpond" / "bench-dlt-venv"


def prepare(root: Path, scale: str) -> Path:
    """A project under `root/sf<scale>/` whose inbox is generated once and then reused."""
    project = root / f"sf{scale}"
    inbox = project / "inbox" / "erp"
    project.mkdir(parents=True, exist_ok=True)
    text = (REPO / "millpond.yml").read_text()
    text = text.replace("project_dir: transform", f"project_dir: {REPO / 'transform'}")
    (project / "millpond.yml").write_text(text)
    (project / "transform").unlink(missing_ok=True)  # bench/baseline.py compiles from here
    (project / "transform").symlink_to(REPO / "transform")
    if not (inbox.is_dir() and any(inbox.iterdir())):
        from millpond.ingest.demo import generate

        shutil.rmtree(inbox, ignore_errors=True)
        generate(inbox, float(scale))
    return project


def reset_state(project: Path) -> None:
    """Empty lake, warehouse and ledger (the embedded PostgreSQL is stopped first)."""
    from millpond.metadata.embedded import stop_embedded

    stop_embedded(project / ".millpond" / "pg")
    shutil.rmtree(project / ".millpond", ignore_errors=True)
    for scratch in (".bench-dbt", ".baseline", ".copy", ".dlt"):
        shutil.rmtree(project / scratch, ignore_errors=True)


def millpond_run(project: Path, cold: bool, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`millpond run` as a user types it; the stage breakdown is read from its ledger."""
    if cold:
        reset_state(project)
    measured = run_measured([str(BIN / "millpond"), "run"], project, env)
    run = latest_run(project)
    if run["status"] != "success":
        raise RuntimeError(f"{project}: run {run['run_id']} ended {run['status']}")
    return {"seconds": measured.seconds, "peak_rss_mb": measured.peak_rss_mb, **run}


def dbt_build(project: Path) -> dict[str, Any]:
    """One `dbt build` of the same project, on the warehouse millpond loaded, with the profile
    millpond generated; wall time of the command (dbt start-up and a full parse included)."""
    from millpond.core.config_loading import load_config
    from millpond.nodes.dbt.profile import GENERATED_TARGET

    config = load_config(project / "millpond.yml")
    scratch = project / ".bench-dbt"
    shutil.rmtree(scratch, ignore_errors=True)
    env = {
        "DBT_TARGET_PATH": str(scratch / "target"),
        "DBT_LOG_PATH": str(scratch / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DO_NOT_TRACK": "1",
    }
    command = [
        str(BIN / "dbt"),
        "--quiet",
        "build",
        "--project-dir",
        str(config.dbt_project_dir),
        "--profiles-dir",
        str(config.dbt_profiles_dir),
        "--target",
        GENERATED_TARGET,
    ]
    measured = run_measured(command, project, env)
    results = json.loads((scratch / "target" / "run_results.json").read_text())["results"]
    return {
        "seconds": measured.seconds,
        "peak_rss_mb": measured.peak_rss_mb,
        "nodes": len(results),
        "failed": sum(r["status"] in ("error", "fail") for r in results),
    }


def _json_line(stdout: str) -> dict[str, Any]:
    return json.loads(stdout.strip().splitlines()[-1])


def _measured_script(
    args: list[str],
    project: Path,
    keys: tuple[str, ...],
    python: Path = BIN / "python",
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run a bench script that prints its own timing as a last JSON line: its inner seconds
    and `keys`, next to the process's wall time and peak RSS."""
    measured = run_measured([str(python), *args], project, env)
    inner = _json_line(measured.stdout)
    return {
        "seconds": inner["seconds"],
        "wall_s": measured.seconds,
        "peak_rss_mb": measured.peak_rss_mb,
        **{k: inner[k] for k in keys},
    }


def baseline(project: Path) -> dict[str, Any]:
    """bench/baseline.py on the same inbox; the dbt compile it needs runs first, untimed, in a
    process of its own, so the measured process's RSS is DuckDB's alone."""
    work = project / ".baseline"
    script = str(REPO / "bench" / "baseline.py")
    manifest = work / "target" / "manifest.json"
    if not manifest.is_file():
        run_measured(
            [str(BIN / "python"), script, str(project), str(work), "--compile-only"], project
        )
    return _measured_script(
        [script, str(project), str(work), "--manifest", str(manifest)],
        project,
        ("load_s", "sql_s", "tests", "failed"),
    )


def duckdb_copy(project: Path) -> dict[str, Any]:
    """DuckDB's CSV-to-Parquet COPY of the same files (the landing anchor)."""
    out = project / ".copy"
    shutil.rmtree(out, ignore_errors=True)
    args = [str(HERE / "duckdb_copy.py"), str(project / "inbox" / "erp"), str(out)]
    return _measured_script(args, project, ("rows",))


def dlt_python() -> Path | None:
    """The interpreter that has dlt: this venv (the `bench` extra) or the cached bench venv."""
    if importlib.util.find_spec("dlt") is not None:
        return Path(sys.executable)
    cached = DLT_VENV / "bin" / "python"
    return cached if cached.is_file() else None


def dlt_load(project: Path) -> dict[str, Any] | None:
    """dlt's Arrow/Parquet route into DuckDB; None when dlt is not installed."""
    python = dlt_python()
    if python is None:
        return None
    work = project / ".dlt"
    shutil.rmtree(work, ignore_errors=True)
    args = [str(HERE / "dlt_load.py"), str(project / "inbox" / "erp"), str(work)]
    env = {"RUNTIME__DLTHUB_TELEMETRY": "false"}
    return _measured_script(args, project, ("rows", "dlt"), python, env)


def memory_case(project: Path, limit: str) -> dict[str, Any]:
    """A cold run with `warehouse.memory_limit` below the size of the lineitem export: it must
    land, load and build without being killed (DuckDB spills instead of growing)."""
    lineitem = project / "inbox" / "erp" / "lineitem.csv"
    found: dict[str, Any] = {
        "memory_limit": limit,
        "lineitem_mb": round(lineitem.stat().st_size / 2**20, 1),
    }
    try:
        run = millpond_run(project, cold=True, env={"MILLPOND_WAREHOUSE__MEMORY_LIMIT": limit})
    except (CaseFailed, RuntimeError) as exc:  # reported, not hidden: the goal is not met
        lines = [line for line in str(exc).splitlines() if line.strip()]
        return {**found, "status": f"failed: {lines[-1][:300] if lines else exc}"}
    return {
        **found,
        "seconds": run["seconds"],
        "peak_rss_mb": run["peak_rss_mb"],
        "status": run["status"],
        "stages": run["stages"],
    }
