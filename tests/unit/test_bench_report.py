"""The bench report: goal ratios from one session's medians, and the generated docs section."""

from __future__ import annotations

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

from harness import report
from harness.session import _summarise


def _run(seconds: float, rss: float, stages: dict[str, float]) -> dict:
    return {
        "seconds": seconds,
        "peak_rss_mb": rss,
        "status": "success",
        "stages": {k: {"nodes": 1, "node_s": v * 2, "wall_s": v} for k, v in stages.items()},
    }


def _results(with_dlt: bool) -> dict:
    stages = {"extract": 6.0, "load": 2.0, "dbt": 15.0, "publish": 1.0, "ingest": 7.0}
    cases = {
        "millpond_cold": _summarise([_run(30, 1500, stages), _run(34, 1700, stages)]),
        "millpond_warm": _summarise([_run(2.5, 900, stages)]),
        "dbt_build": _summarise([{"seconds": 12.0, "peak_rss_mb": 800.0}]),
        "baseline": _summarise([{"seconds": 20.0, "peak_rss_mb": 1000.0}]),
        "duckdb_copy": _summarise([{"seconds": 5.0, "peak_rss_mb": 500.0}]),
    }
    missing = {"dlt": "dlt: not installed"}
    if with_dlt:
        cases["dlt"] = _summarise([{"seconds": 14.0, "peak_rss_mb": 700.0}])
        missing = {}
    results = {"scales": {"1": {"cases": cases, "missing": missing}}}
    results["goals"] = report.goals(results)
    results["meta"] = report.meta("just bench --scale 1", 2, 100.0)
    return results


def test_goals_are_ratios_of_the_medians_and_say_whether_they_are_met():
    goals = {g["goal"]: g for g in _results(with_dlt=True)["goals"]}

    assert goals["cold run / bare DuckDB, scale 1"]["value"] == 1.6  # median 32 s / 20 s
    assert goals["cold run / bare DuckDB, scale 1"]["met"] is False  # goal 1.2 at scale 1
    assert goals["dbt stage (wall) / one dbt build, scale 1"]["value"] == 1.25
    assert (
        goals["run with nothing new, seconds, scale 1"] | {"value": 2.5, "met": True}
        == (goals["run with nothing new, seconds, scale 1"])
    )
    assert goals["landing (extract stage wall) / DuckDB COPY, scale 1"]["value"] == 1.2
    assert goals["dlt / millpond ingest (extract+load wall), scale 1"]["value"] == 2.0
    assert goals["dlt / millpond ingest (extract+load wall), scale 1"]["met"] is True
    assert goals["peak RSS cold run / bare DuckDB, scale 1"]["value"] == 1.6


def test_without_dlt_its_goal_is_not_a_number_and_the_report_says_why(tmp_path):
    results = _results(with_dlt=False)
    dlt_goal = next(g for g in results["goals"] if "dlt" in g["goal"])
    assert dlt_goal["value"] is None and dlt_goal["met"] is None

    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nIntro.\n\n## 2026-11-28, earlier figures\nkept\n")
    report.write_docs(docs, report.markdown(results, None))
    report.write_docs(docs, report.markdown(results, "benchmarks.png"))

    text = docs.read_text()
    assert text.count(report.START) == 1 and text.count(report.END) == 1
    assert text.index("Intro.") < text.index(report.START) < text.index("earlier figures")
    assert "dlt: not installed" in text and "![just bench](benchmarks.png)" in text
    assert "32.0 s (30.0-34.0)" in text  # median (min-max) of the two cold runs
