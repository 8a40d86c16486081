"""Python and command nodes (docs/extending.md) in the small shop project, as a user runs them.

The example of docs/extending.md is taken from the doc itself (its millpond.yml block and its
files) and run under `millpond run` (Prefect), through the tasks of the generated Airflow
DAG (`run-start`, one `run-node` per node in the DAG's order, `run-finish`) and under real
Airflow (`airflow dags test`); a failing
command with a secret in its environment fails its node and the run, publishes nothing and
leaks the secret nowhere; a callable that cannot be imported stops a run before it starts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import psycopg
import pytest
from conftest import REPO, millpond, write_acme_project
from psycopg.rows import dict_row

pytestmark = pytest.mark.e2e

DOC = REPO / "docs" / "extending.md"


def doc_blocks() -> dict[str, str]:
    """The doc's example files, by path: each fenced block after `<!-- extending: path -->`."""
    blocks = dict(re.findall(r"<!-- extending: (\S+) -->\n```\w+\n(.*?)```", DOC.read_text(), re.S))
    assert {"millpond.yml", "etl/checks.py", "etl/report.py", "jobs/profile_orders.py"} <= set(
        blocks
    ), sorted(blocks)
    return blocks


def shop(root: Path, nodes: str | None = None, files: dict[str, str] | None = None) -> Path:
    """The shop project with the doc's nodes and files (or these)."""
    blocks = doc_blocks()
    config = blocks.pop("millpond.yml")
    write_acme_project(root, nodes if nodes is not None else config)
    for name, text in {**blocks, **(files or {})}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture
def shop_root(tmp_path: Path) -> Any:
    roots: list[Path] = []

    def make(name: str, nodes: str | None = None, files: dict[str, str] | None = None) -> Path:
        roots.append(shop(tmp_path / name, nodes, files))
        return roots[-1]

    yield make
    for root in roots:
        millpond(root, "down")


def ledger(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def node_runs(url: str, run_id: str) -> dict[str, dict[str, Any]]:
    """The last attempt of each node of the run."""
    rows = ledger(
        url, "select * from millpond.node_runs where run_id = %s order by attempt", run_id
    )
    return {r["node_id"]: r for r in rows}


def assert_documented_order(nodes: dict[str, dict[str, Any]]) -> None:
    placed = {n: r for n, r in nodes.items() if r["kind"] in ("python", "command")}
    assert {n: (r["kind"], r["status"], r["rows"]) for n, r in placed.items()} == {
        "python.check_orders": ("python", "success", 5),
        "command.profile_orders": ("command", "success", 5),
        "python.report": ("python", "success", 3),
        "command.archive": ("command", "success", None),
    }
    assert nodes["python.report"]["bytes"] > 0
    # In order: after the load, before dbt; the report after publish, the archive after it.
    for before_dbt in ("python.check_orders", "command.profile_orders"):
        load = nodes["load.shop.orders"]["finished_at"]
        assert load <= nodes[before_dbt]["started_at"], before_dbt
        assert nodes[before_dbt]["finished_at"] <= nodes["dbt.stg_shop__orders"]["started_at"]
    assert nodes["python.check_orders"]["finished_at"] <= nodes["dbt.country_codes"]["started_at"]
    assert nodes["publish"]["finished_at"] <= nodes["python.report"]["started_at"]
    assert nodes["python.report"]["finished_at"] <= nodes["command.archive"]["started_at"]


def test_the_documented_nodes_run_in_order_under_prefect(
    shop_root: Any, prefect_api: str, machine_pg: str
) -> None:
    root = shop_root("shop")
    graph = millpond(root, "graph", "--json")
    assert graph.returncode == 0, graph.stdout + graph.stderr
    upstream = {n["id"]: set(n["upstream"]) for n in json.loads(graph.stdout)["nodes"]}
    assert upstream["python.check_orders"] == {"load.shop.orders"}
    assert {"python.check_orders", "command.profile_orders"} <= upstream["dbt.stg_shop__orders"]
    assert upstream["python.report"] == {"publish"}
    assert {"python.check_orders", "command.profile_orders"} <= upstream["publish"]

    env = {"MILLPOND_METADATA__URL": machine_pg}
    result = millpond(root, "run", env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = ledger(machine_pg, "select * from millpond.runs")
    assert [(r["orchestrator"], r["status"]) for r in run] == [("prefect", "success")]
    run_id = run[0]["run_id"]
    assert_documented_order(node_runs(machine_pg, run_id))

    report = (root / "exports" / "orders_by_country.csv").read_text().splitlines()
    assert report[0] == "country_name,order_count,revenue" and len(report) == 4
    assert (root / "exports" / "orders_by_country.csv.gz").is_file()
    log = [json.loads(line) for line in (root / ".millpond" / "logs" / f"{run_id}.jsonl").open()]
    said = {
        (r["record"]["extra"]["node_id"], r["record"]["message"])
        for r in log
        if r["record"]["extra"].get("node_id", "").startswith(("python.", "command."))
    }
    assert (
        "command.profile_orders",
        f"[stdout] nightly profile of run {run_id}: 5 orders in the lake",
    ) in said
    assert ("python.check_orders", "5 orders look right") in said

    # Nothing new: the dbt nodes are unchanged, the placed nodes run again all the same.
    again = millpond(root, "run", env=env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    second = ledger(machine_pg, "select run_id from millpond.runs where run_id <> %s", run_id)
    nodes = node_runs(machine_pg, second[0]["run_id"])
    assert nodes["dbt.stg_shop__orders"]["status"] in ("success", "unchanged")
    assert nodes["python.check_orders"]["status"] == "success"
    assert nodes["command.archive"]["status"] == "success"


def dag_tasks(root: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The generated DAG's tasks in an order Airflow could run them (upstream first)."""
    from unit.test_airflow_render import run_dag_file

    dag = root / "dags" / "shop.py"
    rendered = millpond(root, "dag", "--output", str(dag))
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    _, tasks = run_dag_file(dag.read_text(), dag, monkeypatch)
    ordered: list[Any] = []
    while len(ordered) < len(tasks):
        done = {o.task_id for o in ordered}
        ready = [t for t in tasks.values() if t not in ordered and t.upstream <= done]
        assert ready, "the DAG's tasks wait for each other"
        ordered.append(sorted(ready, key=lambda t: t.task_id)[0])
    return ordered


def test_the_dags_tasks_run_the_documented_nodes_in_order(
    shop_root: Any, machine_pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = shop_root("shop_airflow")
    tasks = dag_tasks(root, monkeypatch)
    ids = [t.task_id for t in tasks]
    assert ids[0] == "run_start" and ids[-1] == "run_finish"
    assert ids.index("python.check_orders") < ids.index("dbt.stg_shop__orders")
    assert ids.index("publish") < ids.index("python.report") < ids.index("command.archive")
    env = {
        "MILLPOND_METADATA__URL": machine_pg,
        "MILLPOND_RUN_ID": "manual__shop-1",
        "MILLPOND_ATTEMPT": "1",
        "MILLPOND_RUN_TYPE": "manual",
    }
    try:
        for task in tasks:
            done = subprocess.run(
                # what Airflow's Jinja makes of the command (the full_refresh param unset)
                ["bash", "-c", jinja2.Template(task.kwargs["bash_command"]).render(params={})],
                env={**os.environ, **env},
                cwd=root,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, (task.task_id, done.stdout[-2000:], done.stderr[-2000:])
    finally:
        millpond(root, "run-finish", "--run-id", "manual__shop-1", env=env)
    run = ledger(machine_pg, "select * from millpond.runs")
    assert [(r["orchestrator"], r["status"]) for r in run] == [("airflow", "success")]
    assert_documented_order(node_runs(machine_pg, "manual__shop-1"))


def test_airflow_dags_test_runs_the_documented_nodes_in_order(
    airflow_home: dict[str, str], shop_root: Any, machine_pg: str
) -> None:
    """The same DAG under real Airflow 3.3.2 (`airflow dags test`, its cached venv)."""
    from e2e.test_airflow_dag import dags_test, render

    root = shop_root("shop_dags_test")
    folder = render(root, "shop_placed")
    result = dags_test(airflow_home, folder, "shop_placed", {"MILLPOND_METADATA__URL": machine_pg})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = ledger(machine_pg, "select * from millpond.runs")
    assert [(r["orchestrator"], r["status"]) for r in run] == [("airflow", "success")]
    assert_documented_order(node_runs(machine_pg, run[0]["run_id"]))


LEAKY = """\
nodes:
  leaky:
    kind: command
    run: "{python} leak.py {run_id}"
    env: {SHOP_CONN: "${SHOP_CONN}"}
    after: [load.shop.orders]
    before: [dbt]
"""
LEAK_PY = """\
import os, sys
conn = os.environ["SHOP_CONN"]
print("connecting with", conn, flush=True)
for i in range(30):
    print(f"spark: stage {i} failed", file=sys.stderr)
print("giving up on", conn, file=sys.stderr)
sys.exit(4)
"""
SECRET = "dsn-pw-5c1e0b77"


def test_a_failing_command_fails_the_run_before_publish_and_leaks_no_secret(
    shop_root: Any, prefect_api: str, machine_pg: str
) -> None:
    root = shop_root("shop_leaky", LEAKY, {"leak.py": LEAK_PY})
    env = {"MILLPOND_METADATA__URL": machine_pg, "SHOP_CONN": SECRET}
    result = millpond(root, "run", env=env)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    run = ledger(machine_pg, "select * from millpond.runs")[0]
    assert run["status"] == "failed" and "failed nodes: command.leaky" in run["error"]
    nodes = node_runs(machine_pg, run["run_id"])
    leaky = nodes["command.leaky"]
    assert leaky["kind"] == "command" and leaky["status"] == "failed"
    assert "exited with 4; stderr ends with:" in leaky["error"]
    assert "spark: stage 29 failed" in leaky["error"] and "giving up on ***" in leaky["error"]
    assert "spark: stage 5 failed" not in leaky["error"]  # the tail, not the whole stderr
    assert {nodes[n]["status"] for n in ("dbt.stg_shop__orders", "publish")} == {"skipped"}
    assert not (root / ".millpond" / "published" / "current").exists()

    # The secret reached the command (it printed it) and nothing else.
    log = (root / ".millpond" / "logs" / f"{run['run_id']}.jsonl").read_text()
    assert "connecting with ***" in log
    shown = millpond(root, "config", env=env)
    assert "SHOP_CONN" in shown.stdout
    seen = [result.stdout, result.stderr, shown.stdout, shown.stderr]
    seen += [p.read_bytes().decode("utf-8", "replace") for p in files(root / ".millpond")]
    seen += [
        json.dumps(row, default=str)
        for table in ("runs", "node_runs")
        for row in ledger(machine_pg, f"select * from millpond.{table}")
    ]
    assert not [text[:200] for text in seen if SECRET in text]


def files(folder: Path) -> list[Path]:
    """The state folder's files, but the embedded PostgreSQL's and the warehouse's own."""
    return [
        p
        for p in folder.rglob("*")
        if p.is_file() and "pg" not in p.relative_to(folder).parts[:1] and p.suffix != ".duckdb"
    ]


def test_a_callable_that_cannot_be_imported_stops_the_run_naming_the_key(
    shop_root: Any, machine_pg: str
) -> None:
    nodes = (
        "nodes:\n  enrich: {kind: python, callable: 'etl.enrich:run', after: [load.shop.orders]}\n"
    )
    root = shop_root("shop_missing", nodes)
    env = {"MILLPOND_METADATA__URL": machine_pg}
    checked = millpond(root, "check", env=env)
    assert checked.returncode != 0
    problems = " ".join(checked.stderr.split())  # the problems, as one line
    assert "nodes.enrich.callable: cannot import module 'etl.enrich'" in problems
    result = millpond(root, "run", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "nodes.enrich.callable" in " ".join((result.stdout + result.stderr).split())
    assert not list((root / ".millpond").rglob("_manifest.json"))  # nothing landed

    (root / "etl" / "enrich.py").write_text("def enrich(context):\n    return 1\n")
    result = millpond(root, "graph", env=env)
    assert result.returncode == 2
    said = " ".join((result.stdout + result.stderr).split())
    assert "nodes.enrich.callable: module 'etl.enrich'" in said and "no function 'run'" in said
