"""dbt at the cost of one build, and nothing rebuilt when nothing changed (issue 18).

Real dbt, real ledger, real Prefect server, TPC-H 0.01. Under the flow the ready dbt nodes
share one dbt build; what the ledger records per node must be what one build per node (the
Airflow path, `run_node` node by node) records, and the graph's rule holds: a failing test
stops exactly its descendants.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import REPO, Green, ReferenceRun, database_url, millpond, write_project
from psycopg.rows import dict_row

pytestmark = pytest.mark.e2e


def rows(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def last_run_id(url: str) -> str:
    return rows(url, "select run_id from millpond.runs order by started_at desc limit 1")[0][
        "run_id"
    ]


def node_status(url: str, run_id: str) -> dict[str, str]:
    found = rows(url, "select node_id, status from millpond.node_runs where run_id = %s", run_id)
    return {r["node_id"]: r["status"] for r in found}


def records(url: str, run_id: str) -> dict[str, Any]:
    """What a run left in the ledger, without times and run ids."""
    nodes = rows(
        url,
        "select node_id, kind, attempt, status, rows, error from millpond.node_runs"
        " where run_id = %s",
        run_id,
    )
    tests = rows(
        url,
        "select node_id, test, status, failures, message from millpond.test_results"
        " where run_id = %s",
        run_id,
    )
    counts = rows(url, "select relation, rows from millpond.row_counts where run_id = %s", run_id)
    return {
        "nodes": {n.pop("node_id"): n for n in nodes},
        "tests": {t.pop("test"): t for t in tests},
        "row_counts": {c["relation"]: c["rows"] for c in counts},
    }


def descendants(graph: Any, node_id: str) -> set[str]:
    found: set[str] = set()
    grew = True
    while grew:
        grew = False
        for node in graph.nodes:
            if node.id not in found and ({node_id} | found) & set(node.upstream):
                found.add(node.id)
                grew = True
    return found


def context(root: Path, env: dict[str, str], run_id: str, **fields: Any) -> Any:
    from millpond.core.config_loading import load_config
    from millpond.runtime.context import RunContext

    config = load_config(root / "millpond.yml", {**os.environ, **env})
    return RunContext(config, run_id, **fields)


def run_node_by_node(root: Path, url: str, run_id: str, **fields: Any) -> Any:
    """The Airflow way, in this process: one node at a time, each dbt node its own build;
    a node whose upstream did not succeed is skipped, as the DAG's trigger rule does."""
    from millpond.metadata.records import RunStarted
    from millpond.runtime.execute import NodeFailed, finish_run, run_node, skip_node

    ctx = context(root, {"MILLPOND_METADATA__URL": url}, run_id, orchestrator="airflow", **fields)
    ctx.ledger.write(RunStarted(run_id, "airflow", "manual", ctx.config.target_name))
    for node in ctx.graph.nodes:
        bad = [u for u in node.upstream if ctx.outcomes[u].status in ("failed", "skipped")]
        if bad:
            skip_node(ctx, node.id, f"upstream did not succeed: {', '.join(bad)}")
            continue
        with contextlib.suppress(NodeFailed):  # recorded; its dependants are skipped
            run_node(ctx, node.id)
    finish_run(ctx)
    return ctx


def looks_up_to_date(root: Path, env: dict[str, str]) -> bool:
    """Whether `millpond run` would settle a run now without starting Prefect."""
    from millpond.runtime.nothing_new import _all_up_to_date

    return _all_up_to_date(context(root, env, "look-ahead")) is not None


@pytest.fixture
def ledger(pg_server: str) -> Iterator[Any]:
    """Fresh ledger databases, made on demand, dropped afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"millpond_test_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'create database "{name}"')
        made.append(name)
        return database_url(pg_server, name)

    yield make
    with psycopg.connect(pg_server, autocommit=True) as conn:
        for name in made:
            conn.execute(f'drop database if exists "{name}" with (force)')


def dbt_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "transform"
    shutil.copytree(REPO / "transform", copy, ignore=shutil.ignore_patterns("target", "logs"))
    return copy


def test_shared_build_records_what_one_build_per_node_records(
    tmp_path: Path, demo_files: Path, reference_run: ReferenceRun, ledger: Any
) -> None:
    nodes_url = ledger()
    # The flow's records: the session's reference run (a plain `millpond run` of the same
    # files, ledger of its own).
    flow_project = reference_run.project
    in_flow = records(reference_run.ledger_url, reference_run.run_id)

    per_node = run_node_by_node(write_project(tmp_path / "nodes", demo_files), nodes_url, "n-1")
    by_node = records(nodes_url, "n-1")

    assert len(in_flow["nodes"]) == len(per_node.graph.nodes) == 33
    assert in_flow["nodes"] == by_node["nodes"]
    assert in_flow["tests"] == by_node["tests"] and len(in_flow["tests"]) > 100
    assert in_flow["row_counts"] == by_node["row_counts"]
    assert all(n["status"] == "success" for n in in_flow["nodes"].values())
    # One build did the work: dbt was invoked for a few waves, not once per node.
    log = next((flow_project / ".millpond" / "logs").glob("2*.jsonl")).read_text()
    assert 1 <= log.count("one dbt build of") <= 4


def test_a_failing_test_mid_graph_stops_exactly_its_descendants(
    tmp_path: Path, demo_files: Path, prefect_api: str, ledger: Any
) -> None:
    broken = dbt_copy(tmp_path)
    (broken / "tests" / "assert_no_supplier_in_germany.sql").write_text(
        "-- deliberately fails: the demo data has German suppliers\n"
        "select * from {{ ref('stg_erp__supplier') }} where nation_key = 7\n"
    )
    url = ledger()
    env = {"MILLPOND_METADATA__URL": url, "MILLPOND_DBT__PROJECT_DIR": str(broken)}
    project = write_project(tmp_path / "project", demo_files)
    result = millpond(project, "run", env=env)
    assert result.returncode == 1
    assert "assert_no_supplier_in_germany" in result.stdout

    graph = context(project, env, "graph-only").graph
    status = node_status(url, last_run_id(url))
    stopped = descendants(graph, "dbt.stg_erp__supplier")
    assert "dbt.dim_supplier" in stopped and "publish" in stopped
    assert status["dbt.stg_erp__supplier"] == "failed"
    assert {n: status[n] for n in stopped} == dict.fromkeys(stopped, "skipped")
    others = {n.id for n in graph.nodes} - stopped - {"dbt.stg_erp__supplier"}
    assert {n: status[n] for n in others} == dict.fromkeys(others, "success")
    failed = rows(
        url,
        "select test, node_id, status from millpond.test_results where status <> 'pass'",
    )
    assert failed == [
        {
            "test": "assert_no_supplier_in_germany",
            "node_id": "dbt.stg_erp__supplier",
            "status": "fail",
        }
    ]


def test_nothing_new_rebuilds_nothing_and_publishes_nothing(after_a_green_run: Green) -> None:
    project, url, env = after_a_green_run.project, after_a_green_run.url, after_a_green_run.env
    current = project / ".millpond" / "published" / "current"
    snapshot = current.resolve()
    first = last_run_id(url)

    again = millpond(project, "run", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing new: nothing landed, loaded, rebuilt or published" in again.stdout
    assert "no flow run: nothing new" in again.stdout
    assert current.resolve() == snapshot
    second = last_run_id(url)
    status = node_status(url, second)
    dbt_nodes = {n for n in status if n.startswith("dbt.")}
    assert len(dbt_nodes) == 16 and len(status) == 33
    assert set(status.values()) == {"unchanged"}  # settled before Prefect started
    (run,) = rows(url, "select status, flow_run_id from millpond.runs where run_id = %s", second)
    assert run == {"status": "success", "flow_run_id": None}
    assert rows(url, "select * from millpond.test_results where run_id = %s", second) == []
    # An unchanged model still reports its rows, as the run that built it counted them.
    built, kept = records(url, first), records(url, second)
    assert kept["row_counts"] == built["row_counts"]

    # What makes a run go ahead: a re-sent copy of a landed export does not, a new one does.
    inbox = project / "inbox" / "erp"
    shutil.copy(inbox / "supplier.csv", inbox / "supplier_2.csv")
    assert looks_up_to_date(project, env)
    first_rows = (inbox / "supplier.csv").read_text().splitlines()[:2]
    (inbox / "supplier_3.csv").write_text("\n".join(first_rows) + "\n")
    assert not looks_up_to_date(project, env)
    (inbox / "supplier_3.csv").unlink()

    # Asked for a full refresh, everything is rebuilt and tested again, and published.
    run_node_by_node(project, url, "full-refresh-1", full_refresh=True)
    status = node_status(url, "full-refresh-1")
    assert {status[n] for n in dbt_nodes} == {"success"} and status["publish"] == "success"
    assert current.resolve() != snapshot


def test_changing_one_model_rebuilds_it_and_its_descendants_only(
    after_a_green_run: Green,
) -> None:
    project, url, env = after_a_green_run.project, after_a_green_run.url, after_a_green_run.env
    dbt_project = project / "dbt"  # the green run's own copy of the repo's dbt project
    snapshot = (project / ".millpond" / "published" / "current").resolve()

    model = dbt_project / "models" / "staging" / "erp" / "stg_erp__supplier.sql"
    model.write_text(model.read_text() + "\n-- reviewed\n")
    again = millpond(project, "run", env=env)
    assert again.returncode == 0, again.stdout + again.stderr

    graph = context(project, env, "graph-only").graph
    status = node_status(url, last_run_id(url))
    rebuilt = {"dbt.stg_erp__supplier"} | descendants(graph, "dbt.stg_erp__supplier")
    dbt_nodes = {n.id for n in graph.nodes if n.kind == "dbt"}
    assert {n for n in dbt_nodes if status[n] == "success"} == rebuilt & dbt_nodes
    assert {n for n in dbt_nodes if status[n] == "unchanged"} == dbt_nodes - rebuilt
    assert status["publish"] == "success"
    assert (project / ".millpond" / "published" / "current").resolve() != snapshot
