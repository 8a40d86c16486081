"""`millpond retry` after a failed night (issue 27): real dbt, real ledger, real Prefect server,
TPC-H 0.01. A mart whose SQL is broken fails the run; retried while still broken the retry
fails the same way; fixed, a retry of that retry rebuilds exactly the mart and what depends on
it, in one dbt build, keeps every other node (its upstream models included) `unchanged`,
publishes, and leaves the ledger linking the three runs. The run after it has nothing new.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import millpond, write_project
from test_dbt_shared_build import context, dbt_copy, descendants, last_run_id, node_status, rows

pytestmark = pytest.mark.e2e


def retry_of(url: str, run_id: str) -> Any:
    return rows(url, "select retry_of from millpond.runs where run_id = %s", run_id)[0]["retry_of"]


def test_retry_last_rebuilds_the_fixed_mart_and_its_descendants_only(
    tmp_path: Path, demo_files: Path, prefect_api: str, machine_pg: str
) -> None:
    dbt_project = dbt_copy(tmp_path)
    url = machine_pg
    env = {"MILLPOND_METADATA__URL": url, "MILLPOND_DBT__PROJECT_DIR": str(dbt_project)}
    project = write_project(tmp_path / "project", demo_files)
    mart = dbt_project / "models" / "marts" / "dim_customer.sql"
    good = mart.read_text()
    mart.write_text(good + "\nthis is not sql\n")

    night = millpond(project, "run", env=env)
    assert night.returncode == 1, night.stdout + night.stderr
    failed = last_run_id(url)
    graph = context(project, env, "graph-only").graph
    rerun = {"dbt.dim_customer"} | descendants(graph, "dbt.dim_customer")
    assert {"dbt.agg_revenue_by_nation_year", "publish"} <= rerun  # and what tests tie to it
    rerun_dbt = {n for n in rerun if n.startswith("dbt.")}
    kept = {n.id for n in graph.nodes} - rerun
    assert node_status(url, failed)["dbt.dim_customer"] == "failed"

    # Retried while still broken: the same nodes run and fail again, the rest is kept.
    still = millpond(project, "retry", "last", env=env)
    assert still.returncode == 1, still.stdout + still.stderr
    first_retry = last_run_id(url)
    assert retry_of(url, first_retry) == failed
    status = node_status(url, first_retry)
    assert {n: status[n] for n in kept} == dict.fromkeys(kept, "unchanged")
    assert status["dbt.dim_customer"] == "failed"

    mart.write_text(good)  # fixed
    fixed = millpond(project, "retry", env=env)  # `last`: the failed retry
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    second_retry = last_run_id(url)
    assert f"retry of run {first_retry}: {len(rerun)} nodes rerun, {len(kept)} kept" in fixed.stdout
    assert retry_of(url, second_retry) == first_retry
    status = node_status(url, second_retry)
    assert {n: status[n] for n in rerun} == dict.fromkeys(rerun, "success")
    assert {n: status[n] for n in kept} == dict.fromkeys(kept, "unchanged")
    # The upstream models were not rebuilt: no attempt of theirs ran dbt in either retry.
    for upstream in ("dbt.stg_erp__customer", "dbt.stg_erp__nation", "dbt.stg_erp__region"):
        assert status[upstream] == "unchanged"
    tested = rows(
        url, "select distinct node_id from millpond.test_results where run_id = %s", second_retry
    )
    assert {t["node_id"] for t in tested} <= rerun_dbt
    assert {"dbt.dim_customer", "dbt.agg_revenue_by_nation_year"} <= {t["node_id"] for t in tested}
    # The mart and its descendant were built together, in one dbt build.
    log = (project / ".millpond" / "logs" / f"{second_retry}.jsonl").read_text()
    builds = [line for line in log.splitlines() if "one dbt build of" in line]
    assert len(builds) == 1, builds
    assert f"one dbt build of {len(rerun_dbt)} nodes" in builds[0]
    current = project / ".millpond" / "published" / "current"
    assert current.resolve().name == f"{second_retry}.duckdb"

    shown = millpond(project, "status", second_retry, env=env)
    assert f"retry of run {first_retry}" in shown.stdout, shown.stdout
    assert f"retried by {second_retry}" in millpond(project, "status", first_retry, env=env).stdout

    # What the retry kept carries its fingerprints forward: the next run has nothing new.
    after = millpond(project, "run", env=env)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "no flow run: nothing new" in after.stdout
    assert set(node_status(url, last_run_id(url)).values()) == {"unchanged"}

    # The latest run succeeded: nothing to retry, and nothing is started.
    runs = rows(url, "select count(*) as n from millpond.runs")[0]["n"]
    refused = millpond(project, "retry", "last", env=env)
    assert refused.returncode == 1
    assert f"run {last_run_id(url)} succeeded: nothing to retry" in refused.stderr
    assert rows(url, "select count(*) as n from millpond.runs")[0]["n"] == runs
