"""`millpond retry` and `POST /runs/{id}/retry` against a real ledger: what a retry reruns and
keeps, which runs are refused (and that a refusal records nothing), and a retry through the
API of a real run of the tiny acme project (real dbt, the test Prefect server) whose mart
failed: only that mart and publish run again, the rest is kept, and both runs are linked.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import millpond, write_acme_project
from psycopg.rows import dict_row
from serve_helpers import api_for

from millpond.core.config_loading import load_config
from millpond.core.graph import Graph, Node
from millpond.core.runid import new_run_id
from millpond.metadata.db import migrate
from millpond.metadata.records import NodeFinished, NodeStarted, RunFinished, RunStarted
from millpond.metadata.retries import RetryRefused
from millpond.runtime.context import RunContext
from millpond.runtime.retry import adopt, find_run, plan
from millpond.runtime.selection import Selection
from millpond.serve import trigger

pytestmark = pytest.mark.integration


def rows(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def run_count(url: str) -> int:
    return int(rows(url, "select count(*) as n from millpond.runs")[0]["n"])


@pytest.fixture
def stack(machine_pg: str, tmp_path: Path) -> Path:
    migrate(machine_pg)
    (tmp_path / "millpond.yml").write_text(
        f"project: retries\nstate_dir: state\nmetadata: {{url: '{machine_pg}'}}\n"
    )
    return tmp_path / "millpond.yml"


def context(stack: Path, run_id: str | None = None) -> RunContext:
    return RunContext(load_config(stack, {}), run_id or new_run_id())


def record_run(ctx: RunContext, status: str, nodes: dict[str, str], **opened: Any) -> str:
    """A run in the ledger with these node outcomes (node id -> status)."""
    run_id = new_run_id()
    ctx.ledger.write(RunStarted(run_id, "prefect", "cli", "duckdb", **opened))
    for node_id, node_status in nodes.items():
        attempt = 0 if node_status == "skipped" else 1
        ctx.ledger.write(NodeStarted(run_id, node_id, node_id.split(".")[0], attempt))
        if node_status != "running":
            ctx.ledger.write(NodeFinished(run_id, node_id, attempt, node_status, 5))
    if status not in ("running", "queued"):
        ctx.ledger.write(RunFinished(run_id, status, error=None))
    time.sleep(0.01)  # `last` is the latest start
    return run_id


# extract -> load -> stg -> mart -> publish, and a second mart on stg; `dbt.new` joined the
# graph after the run being retried.
GRAPH = Graph(
    (
        Node("extract.erp.orders", "extract"),
        Node("load.erp.orders", "load", ("extract.erp.orders",)),
        Node("dbt.stg_orders", "dbt", ("load.erp.orders",)),
        Node("dbt.fct_orders", "dbt", ("dbt.stg_orders",)),
        Node("dbt.agg_orders", "dbt", ("dbt.fct_orders",)),
        Node("dbt.dim_country", "dbt", ("dbt.stg_orders",)),
        Node("dbt.new", "dbt", ("load.erp.orders",)),
        Node(
            "publish",
            "publish",
            ("dbt.agg_orders", "dbt.dim_country", "dbt.new"),
        ),
    )
)


def test_a_retry_reruns_the_unfinished_nodes_with_their_descendants_and_keeps_the_rest(
    stack: Path, machine_pg: str
) -> None:
    ctx = context(stack)
    failed = record_run(
        ctx,
        "failed",
        {
            "extract.erp.orders": "success",
            "load.erp.orders": "unchanged",
            "dbt.stg_orders": "success",
            "dbt.fct_orders": "failed",
            "dbt.agg_orders": "skipped",
            "dbt.dim_country": "success",
            "publish": "skipped",
        },
        options={"select": ["+fct_orders"], "full_refresh": True},
    )
    retry = context(stack)
    adopt(retry, find_run(retry, "last"))
    assert retry.retry_of == failed
    # The same part of the graph, with the same options, as the run it retries.
    assert (retry.select, retry.exclude, retry.full_refresh) == (("+fct_orders",), (), True)
    retry.__dict__["selection"] = Selection(GRAPH)  # the graph without a dbt parse
    plan(retry)
    assert retry.keep == {
        "extract.erp.orders",
        "load.erp.orders",
        "dbt.stg_orders",
        "dbt.dim_country",
    }
    # A retry of a retry: what the first retry did not finish, and nothing it finished.
    retry.ledger.write(
        RunStarted(retry.run_id, "prefect", "cli", "duckdb", retry_of=failed, options=retry.options)
    )
    outcomes = dict.fromkeys(retry.keep, "unchanged")
    outcomes |= {"dbt.fct_orders": "success", "dbt.new": "success", "dbt.agg_orders": "failed"}
    for node_id, node_status in {**outcomes, "publish": "skipped"}.items():
        retry.ledger.write(NodeStarted(retry.run_id, node_id, "dbt", 1))
        retry.ledger.write(NodeFinished(retry.run_id, node_id, 1, node_status, 5))
    retry.ledger.write(RunFinished(retry.run_id, "failed"))
    again = context(stack)
    adopt(again, find_run(again, retry.run_id))
    again.__dict__["selection"] = Selection(GRAPH)
    plan(again)
    assert again.keep == {n.id for n in GRAPH.nodes} - {"dbt.agg_orders", "publish"}
    assert again.select == ("+fct_orders",) and again.full_refresh
    (linked,) = rows(
        machine_pg, "select retry_of, options from millpond.runs where run_id = %s", retry.run_id
    )
    assert linked == {
        "retry_of": failed,
        "options": {"select": ["+fct_orders"], "full_refresh": True},
    }


def test_only_a_failed_or_abandoned_run_is_retried_and_a_refusal_records_nothing(
    stack: Path, machine_pg: str
) -> None:
    ctx = context(stack)
    with pytest.raises(RetryRefused, match="no runs in the ledger yet") as empty:
        find_run(ctx, "last")
    assert empty.value.unknown
    ok = record_run(ctx, "success", {"publish": "success"})
    running = record_run(ctx, "running", {"publish": "running"})
    abandoned = record_run(ctx, "abandoned", {"publish": "abandoned"})
    before = run_count(machine_pg)
    with pytest.raises(RetryRefused, match=f"run {ok} succeeded: nothing to retry"):
        find_run(ctx, ok)
    with pytest.raises(RetryRefused, match=f"run {running} is still running"):
        find_run(ctx, running)
    with pytest.raises(RetryRefused, match="no run 'no-such-run' in the ledger") as unknown:
        find_run(ctx, "no-such-run")
    assert unknown.value.unknown
    assert find_run(ctx, abandoned)["run_id"] == abandoned

    # The command says the same, exits 1 (2 for a run the ledger does not know), and starts
    # no run.
    root = stack.parent
    refused = millpond(root, "retry", ok)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"run {ok} succeeded: nothing to retry" in refused.stderr
    unknown_run = millpond(root, "retry", "20990101T000000Z-abcdef")
    assert unknown_run.returncode == 2
    assert "no run '20990101T000000Z-abcdef' in the ledger" in unknown_run.stderr
    assert abandoned in unknown_run.stderr  # the most recent runs, to pick from
    assert run_count(machine_pg) == before


def test_post_retry_answers_404_and_409_and_starts_nothing(
    stack: Path, machine_pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = context(stack)
    ok = record_run(ctx, "success", {"publish": "success"})
    running = record_run(ctx, "running", {"publish": "running"})
    before = run_count(machine_pg)
    monkeypatch.setenv("MILLPOND_API_KEYS", "k1")
    with api_for(stack, monkeypatch) as api:
        assert api.post(f"/runs/{ok}/retry").status_code == 401
        key = {"X-API-Key": "k1"}
        unknown = api.post("/runs/20990101T000000Z-abcdef/retry", headers=key)
        assert unknown.status_code == 404
        assert "20990101T000000Z-abcdef" in unknown.json()["detail"]
        done = api.post(f"/runs/{ok}/retry", headers=key)
        assert done.status_code == 409
        assert done.json() == {
            "detail": f"run {ok} succeeded: nothing to retry (`millpond run` starts a new run)",
            "run_id": ok,
        }
        busy = api.post(f"/runs/{running}/retry", headers=key)
        assert busy.status_code == 409 and "still running" in busy.json()["detail"]
    assert run_count(machine_pg) == before


def wait_closed(api: Any, run_id: str, seconds: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        run = api.get(f"/runs/{run_id}").json()
        if run["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return run
        time.sleep(0.5)


def node_status(url: str, run_id: str) -> dict[str, str]:
    found = rows(url, "select node_id, status from millpond.node_runs where run_id = %s", run_id)
    return {r["node_id"]: r["status"] for r in found}


def test_post_retry_reruns_the_failed_mart_of_a_real_run(
    tmp_path: Path, machine_pg: str, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_acme_project(
        tmp_path / "acme", f"metadata: {{url: '{machine_pg}'}}\nstate_dir: state\n"
    )
    mart = root / "dbt" / "models" / "orders_by_country.sql"
    good = mart.read_text()
    mart.write_text(good.replace("count(*) as order_count", "count(* as order_count"))
    first = millpond(root, "run")
    assert first.returncode == 1, first.stdout + first.stderr
    (failed,) = rows(machine_pg, "select run_id from millpond.runs")
    before = node_status(machine_pg, failed["run_id"])
    assert before["dbt.orders_by_country"] == "failed" and before["publish"] == "skipped"

    mart.write_text(good)  # fixed
    monkeypatch.delenv("MILLPOND_API_KEYS", raising=False)
    with api_for(root / "millpond.yml", monkeypatch) as api:
        started = api.post(f"/runs/{failed['run_id']}/retry")
        assert started.status_code == 202, started.text
        retry_id = started.json()["run_id"]
        assert started.json()["status"] == "started"
        assert api.get(f"/runs/{retry_id}").json()["retry_of"] == failed["run_id"]
        run = wait_closed(api, retry_id)
        assert run["status"] == "success", run
        assert run["retry_of"] == failed["run_id"] and run["trigger"] == "api"
        assert api.get(f"/runs/{failed['run_id']}").json()["retried_by"] == [retry_id]
    child = trigger.running_child()  # the run's process ends right after it closed the run
    if child is not None:
        child.process.wait(60)
    after = node_status(machine_pg, retry_id)
    assert after == {
        "extract.shop.orders": "unchanged",
        "load.shop.orders": "unchanged",
        "dbt.country_codes": "unchanged",
        "dbt.stg_shop__orders": "unchanged",
        "dbt.orders_by_country": "success",
        "publish": "success",
    }
    assert (root / "state" / "published" / "current").resolve().name == f"{retry_id}.duckdb"
    # The mart was built and tested once more; the kept models carry their rows forward.
    tests = rows(
        machine_pg, "select node_id, status from millpond.test_results where run_id = %s", retry_id
    )
    assert {t["node_id"] for t in tests} == {"dbt.orders_by_country"}
    assert {t["status"] for t in tests} == {"pass"}
