"""`just bench` at a tiny scale, so the harness cannot rot: every case runs and is reported.

Benchmarks are never assertions: this checks that the report has every case, every goal of
issue 18 with a number (or says why not), the stage breakdown from the ledger and the memory
case, never how fast anything was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.e2e

CASES = ["millpond_cold", "millpond_warm", "dbt_build", "baseline", "duckdb_copy", "dlt"]


def test_the_bench_reports_every_case_and_goal_at_a_tiny_scale(tmp_path, demo_files, prefect_api):
    work, docs = tmp_path / "work", tmp_path / "docs"
    shutil.copytree(demo_files, work / "sf0.01" / "inbox" / "erp")  # reused, not regenerated
    docs.mkdir()
    shutil.copy(REPO / "docs" / "benchmarks.md", docs / "benchmarks.md")
    command = [sys.executable, str(REPO / "bench" / "compare.py"), "--scale", "0.01"]
    command += ["--repeat", "1", "--json", "--memory-limit", "32MB"]
    command += ["--work", str(work), "--docs", str(docs)]

    done = subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        capture_output=True,
        text=True,
        timeout=1200,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    scale = results["scales"]["0.01"]
    has_dlt = "dlt" in scale["cases"]
    expected = CASES if has_dlt else CASES[:-1]
    assert sorted(scale["cases"]) == sorted(expected)
    if not has_dlt:
        assert scale["missing"] == {"dlt": "dlt: not installed"}
    for name in expected:
        case = scale["cases"][name]
        assert case["seconds"]["min"] <= case["seconds"]["median"] <= case["seconds"]["max"]
        assert case["peak_rss_mb"]["median"] > 0, name
    cold, warm = scale["cases"]["millpond_cold"], scale["cases"]["millpond_warm"]
    assert cold["status"] == warm["status"] == "success"
    assert {"extract", "load", "dbt", "publish", "ingest"} <= set(cold["stage_wall_s"])
    assert cold["stages"]["extract"]["nodes"] == 8 and cold["stages"]["dbt"]["nodes"] == 16
    assert scale["cases"]["baseline"]["failed"]["median"] == 0
    assert scale["cases"]["dbt_build"]["failed"]["median"] == 0

    goals = {g["goal"]: g for g in results["goals"]}
    assert len(goals) == 6
    for name, goal in goals.items():
        if "dlt" in name and not has_dlt:
            assert goal["value"] is None and goal["met"] is None
        else:
            assert isinstance(goal["value"], float | int) and goal["value"] > 0, name
            assert isinstance(goal["met"], bool), name

    memory = results["memory"]
    assert memory["status"] == "success" and memory["memory_limit"] == "32MB"
    assert memory["lineitem_mb"] > 0 and memory["peak_rss_mb"] > 0

    report = (docs / "benchmarks.md").read_text()
    assert report.count("<!-- bench:start") == 1 and report.count("<!-- bench:end -->") == 1
    assert "## 2026-11-28, 2 cores" in report  # the hand-written history stays
    for label in ("cold", "nothing new", "one `dbt build`", "bare DuckDB", "COPY", "dlt"):
        assert label in report
    generated = report.split("<!-- bench:start")[1].split("<!-- bench:end -->")[0]
    assert ("dlt: not installed" in generated) != has_dlt  # the prose above names it too
    assert "Memory case (scale 0.01)" in report
    assert all(goal in report for goal in goals)
    assert (docs / "benchmarks.png").is_file() == (results["chart"] == "benchmarks.png")
