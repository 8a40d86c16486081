"""Every dbt node kind under millpond, on DuckDB and on PostgreSQL (issue 27, part 5).

tests/fixtures/dbt_kinds is a millpond project (one files source, `shop`) whose dbt project
has a seed, a snapshot, views, a table, an ephemeral model, incremental models (delete+insert
with a unique_key, and append), a microbatch model, a unit test, a singular and a custom
generic test, tags, sources with freshness and an exposure. One scenario per target, shared
by the module's tests (`millpond run` through the session's Prefect server):

1. the first run, with `--vars` holding a secret-named var;
2. a changed customer, new orders and a seed row arrive; the same `--vars`;
3. one more order, `--select tag:finance`;
4. `--select tag:finance --vars '{order_amount_limit: 1}'`: the singular test fails;
5. the customers' freshness rule made strict (error after 2 days), `--select
   stg_shop__customers+ --full-refresh`: the source is stale, nothing is built from it.

The generated DAG runs once on real Airflow (DuckDB).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
import yaml
from conftest import REPO, millpond, new_database
from psycopg.rows import dict_row

pytestmark = pytest.mark.e2e

FIXTURE = REPO / "tests" / "fixtures" / "dbt_kinds"
SECRET = "kinds-token-7c1e5d3f9a"
VARS = json.dumps({"api_token": SECRET})
# What the tests look at in the warehouse after each run (the same SQL on both targets).
WAREHOUSE = {
    "seed": "select count(*) from seeds.country_codes",
    "history": "select email, dbt_valid_to is not null from snapshots.customers_snapshot "
    "where customer_id = 2 order by dbt_valid_from",
    "dim": "select email, country_code from marts.dim_customers where customer_id in (2, 4) "
    "order by customer_id",
    "log": "select order_id, built_by from marts.fct_order_log order by 1",
    "orders": "select order_id, cast(amount as varchar), built_by from marts.fct_orders order by 1",
    "events": "select count(*) from marts.fct_daily_events",
    "ephemeral": "select table_name from information_schema.tables "
    "where table_name = 'int_orders__with_country'",
}
# `--select tag:finance`: the two tagged models and the source tables they read (fct_orders
# reads customers through the ephemeral model and the staging view); no other dbt node.
FINANCE = {
    "extract.shop.orders",
    "load.shop.orders",
    "extract.shop.customers",
    "load.shop.customers",
    "dbt.fct_orders",
    "dbt.fct_order_log",
}


@dataclass
class Scenario:
    """One target's project and the runs made on it."""

    root: Path
    target: str
    ledger: str
    warehouse: str | None = None
    runs: dict[str, Any] = field(default_factory=dict)  # step -> (result, run_id)
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)  # step -> WAREHOUSE rows

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of the warehouse itself (the pipeline owns it; no run is going on)."""
        if self.target == "duckdb":
            path = self.root / ".millpond" / "warehouse.duckdb"
            with duckdb.connect(str(path), read_only=True) as con:
                return con.execute(sql).fetchall()
        assert self.warehouse
        with psycopg.connect(self.warehouse) as conn:
            return conn.execute(sql).fetchall()  # type: ignore[arg-type]

    def ledger_rows(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        with psycopg.connect(self.ledger, row_factory=dict_row) as conn:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]

    def nodes(self, step: str) -> dict[str, str]:
        found = self.ledger_rows(
            "select node_id, status from millpond.node_runs where run_id = %s order by attempt",
            self.runs[step][1],
        )
        return {r["node_id"]: r["status"] for r in found}

    def tests(self, step: str) -> dict[str, dict[str, Any]]:
        found = self.ledger_rows(
            "select node_id, test, status, failures, message from millpond.test_results "
            "where run_id = %s",
            self.runs[step][1],
        )
        return {r["test"]: r for r in found}

    def run(self, step: str, *args: str) -> Any:
        """`millpond run` with these arguments, then what the warehouse holds after it."""
        result = millpond(self.root, "run", *args)
        run_id = self.ledger_rows(
            "select run_id from millpond.runs order by started_at desc limit 1"
        )[0]["run_id"]
        self.runs[step] = (result, run_id)
        self.seen[step] = {name: self.query(sql) for name, sql in WAREHOUSE.items()}
        return result


def write_kinds_project(
    root: Path, ledger: str, warehouse: str | None, dbt_vars: dict[str, Any] | None = None
) -> Path:
    """The fixture project in `root`, its ledger and (PostgreSQL) warehouse given, and the
    events of the last three days (the microbatch model begins a week before the parse)."""
    shutil.copytree(FIXTURE, root)
    config = yaml.safe_load((root / "millpond.yml").read_text())
    config["metadata"] = {"url": ledger}
    if dbt_vars:
        config["dbt"]["vars"] = dbt_vars
    if warehouse:
        config["warehouse"] = {"target": "postgres", "url": warehouse}
    (root / "millpond.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    today = dt.datetime.now(dt.UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    lines = ["event_id,event_type,event_at"]
    for i, days in enumerate((2, 1, 0, 0), start=1):
        at = today - dt.timedelta(days=days)
        lines.append(f"{i},{'view' if i % 2 else 'click'},{at:%Y-%m-%d %H:%M:%S}")
    (root / "inbox" / "shop" / "events.csv").write_text("\n".join(lines) + "\n")
    return root


def play(scenario: Scenario) -> None:
    """The four runs of the module docstring."""
    root = scenario.root
    scenario.run("first", "--vars", VARS)
    inbox = root / "inbox" / "shop"
    (inbox / "customers_2.csv").write_text(
        "customer_id,name,email,country_code,updated_at\n"
        "2,Bob,bob@new.example.com,FR,2024-06-01 00:00:00\n"
        "4,Dee,dee@example.com,BE,2024-06-01 00:00:00\n"
    )
    (inbox / "orders_2.csv").write_text(
        "order_id,customer_id,amount,ordered_at\n"
        "3,3,6.00,2024-03-03 12:00:00\n"
        "4,4,8.00,2024-06-02 10:00:00\n"
        "5,2,2.50,2024-06-03 10:00:00\n"
    )
    seed = root / "transform" / "seeds" / "country_codes.csv"
    seed.write_text(seed.read_text() + "BE,Belgium\n")
    scenario.run("second", "--vars", VARS)
    (inbox / "orders_3.csv").write_text(
        "order_id,customer_id,amount,ordered_at\n6,1,4.00,2024-07-01 10:00:00\n"
    )
    scenario.run("tagged", "--select", "tag:finance", "--vars", VARS)
    failing = json.dumps({"api_token": SECRET, "order_amount_limit": 1})
    scenario.run("failing", "--select", "tag:finance", "--vars", failing)
    sources = root / "transform" / "models" / "staging" / "shop" / "_shop__sources.yml"
    sources.write_text(sources.read_text().replace("count: 36500", "count: 2"))
    selected = ("--select", "stg_shop__customers+", "--full-refresh")
    scenario.run("stale", *selected, "--vars", VARS)


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def scenario(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_server: str,
    prefect_api: str,
) -> Iterator[Scenario]:
    target = request.param
    with new_database(pg_server) as ledger, new_database(pg_server) as warehouse:
        root = tmp_path_factory.mktemp(f"kinds-{target}") / "project"
        chosen = warehouse if target == "postgres" else None
        done = Scenario(write_kinds_project(root, ledger, chosen), target, ledger, chosen)
        try:
            play(done)
            yield done
        finally:
            millpond(root, "down")


def ok(result: Any) -> None:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def manifest(scenario: Scenario) -> dict[str, Any]:
    return json.loads((scenario.root / ".millpond" / "dbt" / "manifest.json").read_text())


def expected_dbt_edges(data: dict[str, Any]) -> dict[str, set[str]]:
    """The manifest's own graph, as a reader of dbt would draw it: one node per model, seed
    and snapshot that is not ephemeral, with the parents it reads (through ephemeral models,
    and a source's load node)."""
    nodes = data["nodes"]
    executable = {
        uid: r
        for uid, r in nodes.items()
        if r["resource_type"] in ("model", "seed", "snapshot")
        and r["config"].get("materialized") != "ephemeral"
    }

    def parents(uid: str) -> set[str]:
        found: set[str] = set()
        for dep in nodes[uid].get("depends_on", {}).get("nodes", []):
            if dep in executable:
                found.add(f"dbt.{nodes[dep]['name']}")
            elif dep in data["sources"]:
                source = data["sources"][dep]
                found.add(f"load.{source['source_name']}.{source['name']}")
            else:  # ephemeral: its parents
                found |= parents(dep)
        return found

    return {f"dbt.{r['name']}": parents(uid) for uid, r in executable.items()}


def test_first_run_builds_every_kind_and_records_its_tests(scenario: Scenario) -> None:
    result, _ = scenario.runs["first"]
    ok(result)
    nodes = scenario.nodes("first")
    assert {n for n in nodes if n.startswith("dbt.")} == {
        "dbt.country_codes",
        "dbt.customers_snapshot",
        "dbt.stg_shop__customers",
        "dbt.stg_shop__orders",
        "dbt.stg_shop__events",
        "dbt.dim_customers",
        "dbt.fct_orders",
        "dbt.fct_order_log",
        "dbt.fct_daily_events",
    }
    assert set(nodes.values()) == {"success"}, nodes
    tests = scenario.tests("first")
    unit = tests["test_stg_shop__customers_keeps_the_latest_version"]
    assert (unit["node_id"], unit["status"]) == ("dbt.stg_shop__customers", "pass")
    assert tests["assert_order_amount_below_limit"]["status"] == "pass"
    generic = [t for name, t in tests.items() if name.startswith("is_positive_")]
    assert {t["node_id"] for t in generic} == {"dbt.fct_orders", "dbt.stg_shop__orders"}
    assert {t["status"] for t in generic} == {"pass"}
    seen = scenario.seen["first"]
    assert seen["events"] == [(4,)]  # the microbatch model, one batch per day
    assert seen["ephemeral"] == []  # inlined, never a relation of its own
    assert seen["history"] == [("bob@example.com", False)]


def test_source_freshness_is_checked_and_recorded(scenario: Scenario) -> None:
    tests = scenario.tests("first")
    customers = tests["source freshness: shop.customers"]
    assert customers["status"] == "warn"
    assert customers["node_id"] in {"dbt.stg_shop__customers"}
    assert tests["source freshness: shop.orders"]["status"] == "pass"
    result, _ = scenario.runs["first"]
    assert "shop.customers" in result.stdout + result.stderr


def test_graph_nodes_and_edges_are_the_manifests(scenario: Scenario) -> None:
    # With the runs' vars, the graph is built from their parse (no parse of its own).
    result = millpond(scenario.root, "graph", "--json", "--vars", VARS)
    ok(result)
    graph = json.loads(result.stdout)
    dbt_nodes = {n["id"]: n for n in graph["nodes"] if n["kind"] == "dbt"}
    assert {i: set(n["upstream"]) for i, n in dbt_nodes.items()} == expected_dbt_edges(
        manifest(scenario)
    )
    # Tests run inside their model's node: the unit test too.
    assert (
        "test_stg_shop__customers_keeps_the_latest_version"
        in (dbt_nodes["dbt.stg_shop__customers"]["params"]["tests"])
    )
    assert "assert_order_amount_below_limit" in dbt_nodes["dbt.fct_orders"]["params"]["tests"]
    # The exposure is shown with the nodes it reads.
    (exposure,) = graph["exposures"]
    assert exposure["name"] == "revenue_dashboard"
    assert set(exposure["upstream"]) == {"dbt.fct_orders", "dbt.dim_customers"}
    text = millpond(scenario.root, "graph", "--vars", VARS)
    assert "exposure revenue_dashboard" in text.stdout
    assert "dbt.fct_orders" in text.stdout.split("exposure revenue_dashboard")[1]


def test_docs_draw_the_exposure_in_dbts_lineage(scenario: Scenario) -> None:
    result = millpond(scenario.root, "docs", "--no-serve", "--vars", VARS)
    ok(result)
    site = json.loads((scenario.root / ".millpond" / "docs" / "manifest.json").read_text())
    exposure = site["exposures"]["exposure.kinds.revenue_dashboard"]
    assert sorted(exposure["depends_on"]["nodes"]) == [
        "model.kinds.dim_customers",
        "model.kinds.fct_orders",
    ]


def test_second_run_keeps_snapshot_history_and_adds_only_new_rows(scenario: Scenario) -> None:
    result, _ = scenario.runs["second"]
    ok(result)
    nodes = scenario.nodes("second")
    # New customers, orders and a seed row: what reads them is rebuilt, the events are not.
    for node in ("dbt.country_codes", "dbt.customers_snapshot", "dbt.fct_orders"):
        assert nodes[node] == "success", (node, nodes)
    assert nodes["dbt.fct_daily_events"] == "unchanged"
    seen = scenario.seen["second"]
    assert seen["seed"] == [(4,)]
    # The snapshot: two versions of customer 2, the old one closed.
    assert seen["history"] == [("bob@example.com", True), ("bob@new.example.com", False)]
    assert seen["dim"] == [("bob@new.example.com", "FR"), ("dee@example.com", "BE")]
    # Append: only the orders not seen before were added, by the second run's dbt (each
    # row says which dbt invocation wrote it; a run may build models in several).
    before = dict(scenario.seen["first"]["log"])
    log = seen["log"]
    assert [r[0] for r in log] == [1, 2, 3, 4, 5]
    assert [before.get(order) == by for order, by in log] == [True, True, True, False, False]
    assert log[3][1] == log[4][1]
    # delete+insert: the orders loaded since the first run replaced or joined the others.
    before = {r[0]: r[2] for r in scenario.seen["first"]["orders"]}
    orders = seen["orders"]
    assert [(r[0], r[1]) for r in orders] == [
        (1, "10.50"),
        (2, "20.00"),
        (3, "6.00"),
        (4, "8.00"),
        (5, "2.50"),
    ]
    assert [before.get(r[0]) == r[2] for r in orders] == [True, True, False, False, False]


def test_select_tag_runs_only_that_subgraph(scenario: Scenario) -> None:
    result, _ = scenario.runs["tagged"]
    ok(result)
    assert set(scenario.nodes("tagged")) == FINANCE
    assert [r[0] for r in scenario.seen["tagged"]["log"]] == [1, 2, 3, 4, 5, 6]
    assert scenario.seen["tagged"]["dim"] == scenario.seen["second"]["dim"]


def test_a_failing_test_fails_its_node(scenario: Scenario) -> None:
    result, _ = scenario.runs["failing"]
    assert result.returncode == 1, result.stdout + result.stderr
    nodes = scenario.nodes("failing")
    assert nodes["dbt.fct_orders"] == "failed"
    assert nodes["dbt.fct_order_log"] in ("success", "unchanged")
    test = scenario.tests("failing")["assert_order_amount_below_limit"]
    assert (test["node_id"], test["status"]) == ("dbt.fct_orders", "fail")


def test_a_stale_source_fails_its_readers_unbuilt(scenario: Scenario) -> None:
    result, _ = scenario.runs["stale"]
    assert result.returncode == 1, result.stdout + result.stderr
    nodes = scenario.nodes("stale")
    assert nodes["dbt.stg_shop__customers"] == "failed"
    assert nodes["dbt.customers_snapshot"] == nodes["dbt.dim_customers"] == "skipped", nodes
    stale = scenario.tests("stale")["source freshness: shop.customers"]
    assert (stale["node_id"], stale["status"]) == ("dbt.stg_shop__customers", "error")
    assert "error after 2 days" in stale["message"]
    # Nothing was rebuilt from it: the snapshot's history is as the tagged run left it.
    assert scenario.seen["stale"]["history"] == scenario.seen["tagged"]["history"]


def test_vars_reach_dbt_and_no_log(scenario: Scenario) -> None:
    # dbt read the var (the staging model would stop the run without it: see its SQL) and
    # neither millpond's logs, dbt's logs and files, nor the console hold its value.
    for step in ("first", "second"):
        result, _ = scenario.runs[step]
        assert SECRET not in result.stdout + result.stderr
    state = scenario.root / ".millpond"
    for folder in (state / "logs", state / "dbt"):
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix in (".jsonl", ".log", ".json", ".sql", ".txt"):
                assert SECRET not in path.read_text(errors="replace"), path
    assert scenario.ledger_rows(
        "select count(*) as n from millpond.node_runs where error like %s", f"%{SECRET}%"
    ) == [{"n": 0}]


def test_the_generated_dag_runs_every_kind_on_airflow(
    airflow_home: dict[str, str], tmp_path: Path, pg_server: str
) -> None:
    from test_airflow_dag import dags_test, render

    with new_database(pg_server) as ledger:
        root = write_kinds_project(tmp_path / "project", ledger, None, {"api_token": SECRET})
        try:
            folder = render(root, "kinds_airflow")
            result = dags_test(airflow_home, folder, "kinds_airflow", {})
            output = result.stdout + result.stderr
            assert result.returncode == 0, output[-4000:]
            done = Scenario(root, "duckdb", ledger)
            (run,) = done.ledger_rows("select * from millpond.runs")
            assert (run["orchestrator"], run["status"]) == ("airflow", "success"), run
            done.runs["airflow"] = (result, run["run_id"])
            nodes = done.nodes("airflow")
            assert set(nodes.values()) == {"success"}, nodes
            assert "dbt.int_orders__with_country" not in nodes
            assert "dbt.fct_daily_events" in nodes and "dbt.customers_snapshot" in nodes
            tests = done.tests("airflow")
            unit = tests["test_stg_shop__customers_keeps_the_latest_version"]
            assert (unit["node_id"], unit["status"]) == ("dbt.stg_shop__customers", "pass")
            assert tests["source freshness: shop.customers"]["status"] == "warn"
            assert tests["assert_order_amount_below_limit"]["status"] == "pass"
            assert done.query("select count(*) from marts.fct_daily_events") == [(4,)]
            assert done.query("select count(*) from snapshots.customers_snapshot") == [(3,)]
            assert SECRET not in output
        finally:
            millpond(root, "down")
