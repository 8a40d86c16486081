"""The generated DAG under real Airflow 3.3.2, in its own cached venv, as a deployer runs it.

One `airflow dags test` per case: the demo project at scale 0.01 (the marts equal a Prefect
run's of the same files, the ledger closes the run with orchestrator `airflow`), and a small
project with a malformed export (the run closes as failed, and so does the DAG run).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
import yaml
from conftest import REPO, ReferenceRun, millpond
from psycopg.rows import dict_row

pytestmark = pytest.mark.e2e

# Loads every DAG file of a folder the way the scheduler does; prints errors, tasks, edges,
# and each task's retries, retry delay and timeout in seconds.
DAGBAG = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(sys.argv[1])
seconds = lambda delta: delta and delta.total_seconds()
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": {d.dag_id: {t.task_id: sorted(t.upstream_task_ids) for t in d.tasks}
             for d in bag.dags.values()},
    "policies": {d.dag_id: {t.task_id: [t.retries, seconds(t.retry_delay),
                                        seconds(t.execution_timeout)] for t in d.tasks}
                 for d in bag.dags.values()},
}))
"""


def dag_bag(airflow_home: dict[str, str], folder: Path) -> dict[str, Any]:
    python = Path(airflow_home["PATH"].split(":")[0]) / "python"
    result = subprocess.run(
        [str(python), "-c", DAGBAG, str(folder)],
        env=airflow_home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def render(project: Path, name: str) -> Path:
    """The project's DAG (DAG id `name`) in its own dags folder."""
    config = project / "millpond.yml"
    data = yaml.safe_load(config.read_text())
    data["project"] = name
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    dag = project / "dags" / f"{name}.py"
    result = millpond(project, "dag", "--output", str(dag))
    assert result.returncode == 0, result.stdout + result.stderr
    return dag.parent


def dags_test(
    airflow_home: dict[str, str], folder: Path, dag_id: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["airflow", "dags", "test", dag_id],
        env={**airflow_home, **env, "AIRFLOW__CORE__DAGS_FOLDER": str(folder)},
        capture_output=True,
        text=True,
        timeout=1200,
    )


def ledger(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def marts(project: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every published table of the marts and aggregates schemas, all rows, sorted."""
    with duckdb.connect(str(project / ".millpond/published/current"), read_only=True) as con:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('marts', 'aggregates') order by 1, 2"
        ).fetchall()
        return {
            f"{s}.{t}": sorted(con.execute(f'select * from "{s}"."{t}"').fetchall(), key=repr)
            for s, t in tables
        }


def graph_nodes(project: Path) -> list[dict[str, Any]]:
    result = millpond(project, "graph", "--json")
    assert result.returncode == 0, result.stderr
    nodes: list[dict[str, Any]] = json.loads(result.stdout)["nodes"]
    return nodes


def expected_edges(project: Path) -> dict[str, list[str]]:
    """`millpond graph --json` plus the open task before every root and the close task after
    every node."""
    tasks = {n["id"]: sorted(n["upstream"] or ["run_start"]) for n in graph_nodes(project)}
    return {"run_start": [], **tasks, "run_finish": sorted(tasks)}


def expected_policies(project: Path) -> dict[str, list[float | None]]:
    """Each task's retries, retry delay and timeout: the node's policy from millpond.yml;
    `run_start` retries twice after 10 s, `run_finish` never (its delay is Airflow 3.3.2's
    default, 300 s; docs/deploy-airflow.md)."""
    nodes = {
        n["id"]: [n["retries"], n["retry_delay_seconds"], n["timeout_seconds"]]
        for n in graph_nodes(project)
    }
    return {"run_start": [2, 10.0, None], **nodes, "run_finish": [0, 300.0, None]}


def test_the_dag_imports_and_has_the_graphs_tasks_and_edges(
    airflow_home: dict[str, str], project: Path
) -> None:
    folder = render(project, "millpond_shape")
    bag = dag_bag(airflow_home, folder)
    assert bag["errors"] == {}
    assert bag["dags"]["millpond_shape"] == expected_edges(project)
    assert bag["policies"]["millpond_shape"] == expected_policies(project)
    # The DAG committed in the repo imports too (its freshness: test_committed_dag_is_current).
    committed = dag_bag(airflow_home, REPO / "airflow_compat" / "dags")
    assert committed["errors"] == {} and list(committed["dags"]) == ["millpond"]


def test_an_airflow_run_builds_the_same_marts_and_closes_the_run(
    airflow_home: dict[str, str],
    project: Path,
    reference_run: ReferenceRun,
    machine_pg: str,
) -> None:
    env = {"MILLPOND_METADATA__URL": machine_pg}
    folder = render(project, "millpond_e2e")
    started = time.perf_counter()
    result = dags_test(airflow_home, folder, "millpond_e2e", env)
    print(f"\nscale 0.01: airflow dags test {time.perf_counter() - started:.1f} s")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # The same files under Prefect: the session's reference run.
    assert marts(project) == marts(reference_run.project)

    runs = ledger(machine_pg, "select * from millpond.runs where orchestrator = 'airflow'")
    assert len(runs) == 1, runs
    run = runs[0]
    assert (run["status"], run["trigger"], run["error"]) == ("success", "manual", None)
    assert run["finished_at"] is not None and run["heartbeat_at"] is not None
    assert run["pid"] is None and run["host"]  # a task lease: no process lives for the run
    nodes = ledger(
        machine_pg,
        "select node_id, status from millpond.node_runs where run_id = %s",
        run["run_id"],
    )
    assert {n["status"] for n in nodes} == {"success"}
    assert len(nodes) == len(expected_edges(project)) - 2
    # run_start started the warm node worker, every node's task went through it, run_finish
    # stopped it (docs/deploy-airflow.md).
    worker_log = (project / ".millpond" / "run" / "node-worker.log").read_text()
    exits = re.findall(r"run-node (\S+): pid \d+ exit (-?\d+)", worker_log)
    assert sorted(exits) == sorted((n["node_id"], "0") for n in nodes)
    assert "stopping: asked to stop" in worker_log


@pytest.fixture
def acme(tmp_path: Path) -> Path:
    root = tmp_path / "acme"
    shutil.copytree(REPO / "tests" / "fixtures" / "acme_dbt", root / "dbt")
    shutil.copytree(REPO / "tests" / "fixtures" / "acme_inbox", root / "inbox" / "shop")
    (root / "millpond.yml").write_text(
        "project: acme\n"
        "dbt:\n"
        "  project_dir: dbt\n"
        "  vars: {api_token: 'not-a-secret'}\n"
        "sources:\n"
        "  shop: {kind: files, path: inbox/shop, tables: [orders]}\n"
    )
    yield root
    millpond(root, "down")


def test_a_failing_node_fails_the_dag_run_and_closes_the_run_as_failed(
    airflow_home: dict[str, str], acme: Path, machine_pg: str
) -> None:
    folder = render(acme, "acme_failing")
    orders = acme / "inbox" / "shop" / "orders.csv"
    lines = orders.read_text().splitlines()
    lines[2] += ",an extra field"
    orders.write_text("\n".join(lines) + "\n")

    result = dags_test(airflow_home, folder, "acme_failing", {"MILLPOND_METADATA__URL": machine_pg})
    output = result.stdout + result.stderr
    assert "orders.csv, line 3" in output
    assert "run_finish" in output
    run = ledger(machine_pg, "select * from millpond.runs")
    assert [(r["orchestrator"], r["status"]) for r in run] == [("airflow", "failed")]
    # The malformed file is rejected at landing (nothing of it lands) and the table's load
    # fails naming it, after loading the table's good files (docs/sources.md).
    assert "failed nodes: load.shop.orders" in run[0]["error"]
    nodes = {
        r["node_id"]: r["status"]
        for r in ledger(machine_pg, "select node_id, status from millpond.node_runs")
    }
    assert nodes["load.shop.orders"] == "failed"
    assert nodes["publish"] == "skipped"  # upstream_failed in Airflow, recorded as skipped
    assert nodes["dbt.country_codes"] == "success"  # the seed does not need the orders


def test_an_airflow_run_with_nothing_new_skips_its_tasks_and_full_refresh_rebuilds(
    airflow_home: dict[str, str], acme: Path, machine_pg: str
) -> None:
    folder = render(acme, "acme_again")
    env = {"MILLPOND_METADATA__URL": machine_pg}
    first = dags_test(airflow_home, folder, "acme_again", env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    published = acme / ".millpond" / "published"
    current = (published / "current").resolve()

    again = dags_test(airflow_home, folder, "acme_again", env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "nothing new (every node up to date, not run)" in again.stdout + again.stderr
    runs = ledger(machine_pg, "select run_id, status from millpond.runs order by started_at")
    assert [r["status"] for r in runs] == ["success", "success"]
    second = runs[1]["run_id"]
    nodes = ledger(
        machine_pg, "select node_id, status from millpond.node_runs where run_id = %s", second
    )
    assert nodes and {n["status"] for n in nodes} == {"unchanged"}
    # no node task ran (each one's run-node would have written a node run of its own)
    assert len(nodes) == len(graph_nodes(acme))
    assert (published / "current").resolve() == current  # nothing republished

    rebuilt = subprocess.run(
        ["airflow", "dags", "test", "acme_again", "--conf", '{"full_refresh": true}'],
        env={**airflow_home, **env, "AIRFLOW__CORE__DAGS_FOLDER": str(folder)},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:] + rebuilt.stderr[-3000:]
    third = ledger(machine_pg, "select run_id from millpond.runs order by started_at")[-1]
    statuses = {
        n["node_id"]: n["status"]
        for n in ledger(
            machine_pg,
            "select node_id, status from millpond.node_runs where run_id = %s",
            third["run_id"],
        )
    }
    assert statuses["publish"] == "success" and statuses["dbt.orders_by_country"] == "success"
    assert (published / "current").resolve() != current
