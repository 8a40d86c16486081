"""An ingest-only project: millpond.yml with sources and no dbt section.

Tried as a team's first week would: a files source, no dbt project. A run lands, loads and
publishes the raw relations it loaded; readers (the API's `/marts`, `millpond query`, a
notebook opening the snapshot) read them; a run with nothing new settles as nothing new and
one with a new file publishes it; the generated Airflow DAG has only extract, load and
publish; the same on the PostgreSQL target. A `dbt` section naming a folder that is not
there is still an error, never an ingest-only run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from conftest import REPO, millpond
from serve_helpers import api_for

pytestmark = pytest.mark.e2e

ORDERS = REPO / "tests" / "fixtures" / "acme_inbox"


def write_ingest_only(root: Path, ledger_url: str, extra: str = "") -> Path:
    """A project with one files source (the five acme orders) and no dbt section."""
    shutil.copytree(ORDERS, root / "inbox" / "shop")
    (root / "millpond.yml").write_text(
        "project: shop\n"
        f"metadata: {{url: '{ledger_url}'}}\n"
        "sources:\n"
        "  shop: {kind: files, path: inbox/shop, tables: [orders]}\n" + extra
    )
    return root


def one_line(text: str) -> str:
    """Output wrapped for a pipe, as one line again."""
    return " ".join(text.split())


def graph_ids(project: Path) -> list[str]:
    result = millpond(project, "graph", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return [n["id"] for n in json.loads(result.stdout)["nodes"]]


def query_json(project: Path, sql: str) -> list[dict[str, Any]]:
    result = millpond(project, "query", sql, "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def add_order(project: Path) -> None:
    (project / "inbox" / "shop" / "orders_2.csv").write_text("order_id,country,amount\n6,DE,3.50\n")


def test_an_ingest_only_project_publishes_its_raw_relations_on_duckdb(
    tmp_path: Path, prefect_api: str, machine_pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = write_ingest_only(tmp_path / "shop", machine_pg)
    assert graph_ids(project) == ["extract.shop.orders", "load.shop.orders", "publish"]

    checked = millpond(project, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ingest-only" in checked.stdout and "publishes the raw relations" in checked.stdout

    first = millpond(project, "run")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "published 1 relation: raw.shop__orders (5 rows)" in one_line(first.stdout)

    # What a notebook opens: the snapshot holds the raw relation, not millpond's bookkeeping.
    snapshot = project / ".millpond" / "published" / "current"
    with duckdb.connect(str(snapshot), read_only=True) as con:
        tables = con.execute(
            "select table_schema || '.' || table_name from information_schema.tables"
        ).fetchall()
        amounts = con.execute("select sum(amount) from raw.shop__orders").fetchone()
    assert tables == [("raw.shop__orders",)]
    assert amounts is not None and float(amounts[0]) == 43.75

    second = millpond(project, "run")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing new: nothing landed, loaded, rebuilt or published" in second.stdout
    assert snapshot.resolve() == (project / ".millpond" / "published" / "current").resolve()

    assert query_json(project, "select count(*) as n from raw.shop__orders") == [{"n": 5}]
    refused = millpond(project, "query", "select * from raw.nope")
    assert refused.returncode == 1 and "query failed" in refused.stderr

    with api_for(project / "millpond.yml", monkeypatch) as api:
        listed = api.get("/marts")
        assert listed.status_code == 200, listed.text
        marts = {m["name"]: m for m in listed.json()["marts"]}
        assert list(marts) == ["shop__orders"]
        columns = [c["name"] for c in marts["shop__orders"]["columns"]]
        assert columns[:3] == ["order_id", "country", "amount"]
        rows = api.get("/marts/shop__orders", params={"country": "FR", "sort": "order_id"})
        assert rows.status_code == 200, rows.text
        assert [r["order_id"] for r in rows.json()["rows"]] == [2, 5]

    # A new file is landed, loaded and published: nothing-new is not sticky.
    add_order(project)
    third = millpond(project, "run")
    assert third.returncode == 0, third.stdout + third.stderr
    assert "published 1 relation: raw.shop__orders (6 rows)" in one_line(third.stdout)
    assert query_json(project, "select count(*) as n from raw.shop__orders") == [{"n": 6}]


def test_publish_raw_off_publishes_nothing_and_says_so(
    tmp_path: Path, prefect_api: str, machine_pg: str
) -> None:
    project = write_ingest_only(tmp_path / "shop", machine_pg, "publish: {raw: false}\n")
    assert graph_ids(project) == ["extract.shop.orders", "load.shop.orders"]
    result = millpond(project, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing published: publish.raw is false" in one_line(result.stdout)
    assert not (project / ".millpond" / "published" / "current").exists()
    refused = millpond(project, "query", "select 1")
    assert refused.returncode == 2 and "nothing published yet" in refused.stderr


def test_a_dbt_section_naming_a_missing_project_is_an_error(
    tmp_path: Path, machine_pg: str
) -> None:
    project = write_ingest_only(tmp_path / "shop", machine_pg, "dbt: {project_dir: transfrom}\n")
    result = millpond(project, "run")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "transfrom" in result.stderr
    assert not (project / ".millpond" / "published").exists()
    checked = millpond(project, "check")
    assert checked.returncode == 1 and "transfrom" in checked.stdout + checked.stderr


def test_the_dag_of_an_ingest_only_project_has_extract_load_publish(
    tmp_path: Path, airflow_home: dict[str, str], machine_pg: str
) -> None:
    from test_airflow_dag import dag_bag

    project = write_ingest_only(tmp_path / "shop", machine_pg)
    dag = project / "dags" / "shop.py"
    result = millpond(project, "dag", "--output", str(dag))
    assert result.returncode == 0, result.stdout + result.stderr
    bag = dag_bag(airflow_home, dag.parent)
    assert bag["errors"] == {}
    tasks = bag["dags"]["shop"]
    nodes = {t for t in tasks if t not in ("run_start", "run_finish")}
    assert nodes == {"extract.shop.orders", "load.shop.orders", "publish"}
    assert tasks["publish"] == ["load.shop.orders"]


def test_an_ingest_only_project_publishes_its_raw_relations_on_postgres(
    tmp_path: Path, prefect_api: str, pg_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import new_database

    with new_database(pg_server) as ledger, new_database(pg_server) as warehouse:
        project = write_ingest_only(
            tmp_path / "shop",
            ledger,
            f"warehouse: {{target: postgres, url: '{warehouse}', reader_role: null}}\n",
        )
        first = millpond(project, "run")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "published 1 relation: published_raw.shop__orders (5 rows)" in one_line(first.stdout)
        with psycopg.connect(warehouse) as conn:
            published = conn.execute(
                "select table_name from information_schema.tables "
                "where table_schema = 'published_raw'"
            ).fetchall()
        assert published == [("shop__orders",)]

        second = millpond(project, "run")
        assert second.returncode == 0, second.stdout + second.stderr
        assert "nothing new: nothing landed, loaded, rebuilt or published" in second.stdout

        rows = query_json(project, "select count(*) as n from published_raw.shop__orders")
        assert rows == [{"n": 5}]
        with api_for(project / "millpond.yml", monkeypatch) as api:
            listed = api.get("/marts")
            assert listed.status_code == 200, listed.text
            assert [m["name"] for m in listed.json()["marts"]] == ["shop__orders"]
            got = api.get("/marts/shop__orders", params={"order_id": 3})
            assert got.status_code == 200, got.text
            assert [r["country"] for r in got.json()["rows"]] == ["DE"]

        add_order(project)
        third = millpond(project, "run")
        assert third.returncode == 0, third.stdout + third.stderr
        assert "published_raw.shop__orders (6 rows)" in one_line(third.stdout)


def test_without_dbt_a_selection_takes_node_ids_and_a_dbt_selector_is_refused(
    tmp_path: Path, machine_pg: str
) -> None:
    project = write_ingest_only(tmp_path / "shop", machine_pg)
    chosen = millpond(project, "graph", "--select", "load.shop.orders")
    assert chosen.returncode == 0, chosen.stdout + chosen.stderr
    assert "extract.shop.orders" in chosen.stdout and "load.shop.orders" in chosen.stdout

    refused = millpond(project, "graph", "--select", "tag:nightly")
    assert refused.returncode == 2
    assert "tag:nightly" in refused.stderr and "no dbt section" in one_line(refused.stderr)
    docs = millpond(project, "docs", "--no-serve")
    assert docs.returncode == 2 and "no dbt section" in one_line(docs.stderr)
