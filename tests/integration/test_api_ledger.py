"""The API's ledger endpoints over a real ledger: filters, paging, trends, metrics, auth, 503."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port
from fastapi.testclient import TestClient
from serve_helpers import api_over

from millpond.metadata.db import migrate
from millpond.metadata.ledger import Ledger
from millpond.metadata.records import (
    DataTestResults,
    NodeFinished,
    NodeStarted,
    RowCounts,
    RunFinished,
    RunStarted,
)

pytestmark = pytest.mark.integration


def fill(url: str, buffer: Path) -> None:
    """Three runs: two successes a day apart and a failure with a failing test."""
    ledger = Ledger(url, buffer)
    for i, status in enumerate(["success", "success", "failed"]):
        run = f"2026112{i}T060000Z-00000{i}"
        ledger.write(RunStarted(run, "prefect", "schedule", "duckdb"))
        ledger.write(NodeStarted(run, "load.erp.orders", "load", 1))
        ledger.write(
            NodeFinished(run, "load.erp.orders", 1, "success", 100 + i, rows=1000 * (i + 1))
        )
        ledger.write(NodeStarted(run, "dbt.fct_orders", "dbt", 1))
        failed = status == "failed"
        ledger.write(
            NodeFinished(run, "dbt.fct_orders", 1, status, 2000, error="boom" if failed else None)
        )
        ledger.write(RowCounts(run, {"marts.fct_orders": 500 * (i + 1)}))
        ledger.write(
            DataTestResults(
                run,
                "dbt.fct_orders",
                [{"test": "t_unique", "status": "fail" if failed else "pass"}],
            )
        )
        ledger.write(
            RunFinished(run, status, error="failed nodes: dbt.fct_orders" if failed else None)
        )
    ledger.close()


@pytest.fixture
def client(
    tmp_path: Path, machine_pg: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    migrate(machine_pg)
    fill(machine_pg, tmp_path / "buffer.jsonl")
    with api_over(machine_pg, tmp_path, monkeypatch) as test_client:
        yield test_client


def test_runs_filter_by_status_and_date_and_page(client: TestClient) -> None:
    page = client.get("/runs", params={"limit": 2}).json()
    assert page["total"] == 3 and len(page["items"]) == 2
    rest = client.get("/runs", params={"limit": 2, "offset": 2}).json()["items"]
    assert {r["run_id"] for r in page["items"]}.isdisjoint({r["run_id"] for r in rest})
    failed = client.get("/runs", params={"status": "failed"}).json()
    assert [r["status"] for r in failed["items"]] == ["failed"] and failed["total"] == 1
    recent = client.get("/runs", params={"since": "2026-01-01T00:00:00Z"}).json()
    assert recent["total"] == 3  # started_at is the time of recording
    assert client.get("/runs", params={"until": "2000-01-01T00:00:00Z"}).json()["total"] == 0
    assert client.get("/runs", params={"status": "bogus"}).status_code == 422
    assert client.get("/runs", params={"limit": 10**9}).status_code == 422


def test_jobs_tables_and_tests(client: TestClient) -> None:
    jobs = {j["node_id"]: j for j in client.get("/jobs").json()}
    assert jobs["dbt.fct_orders"]["status"] == "failed"
    assert jobs["load.erp.orders"]["rows"] == 3000
    tables = client.get("/tables").json()
    assert tables[0]["relation"] == "marts.fct_orders"
    assert [p["rows"] for p in tables[0]["points"]] == [500, 1000, 1500]
    failing = client.get("/tests", params={"status": "fail"}).json()
    assert [(t["test"], t["status"]) for t in failing] == [("t_unique", "fail")]
    assert len(client.get("/tests").json()) == 3


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    text = client.get("/metrics").text
    assert 'millpond_runs{status="success"} 2.0' in text
    assert 'millpond_runs{status="failed"} 1.0' in text
    assert 'millpond_node_duration_seconds_count{kind="dbt"} 3.0' in text
    assert 'millpond_rows_loaded_total{node="load.erp.orders"} 6000.0' in text
    assert 'millpond_test_failures_total{test="t_unique"} 1.0' in text
    assert 'millpond_source_last_success_timestamp_seconds{source="erp",table="orders"}' in text
    assert "millpond_ledger_buffer_records 0.0" in text
    assert "millpond_ledger_up 1.0" in text


def test_api_keys_guard_every_path_but_health(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from millpond.serve import settings

    monkeypatch.setenv("MILLPOND_API_KEYS", "k-one, k-two")
    settings.get_settings.cache_clear()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": "nope"}).status_code == 403
    assert client.get("/metrics", headers={"X-API-Key": "k-two"}).status_code == 200
    assert client.get("/metrics", headers={"Authorization": "Bearer k-one"}).status_code == 200
    assert client.post("/runs").status_code == 401
    for path in ("/runs", "/jobs", "/tables", "/tests", "/openapi.json", "/docs", "/"):
        assert client.get(path).status_code == 401, path
    assert client.get("/runs", headers={"X-API-Key": "k-one"}).status_code == 200
    assert client.get("/health").status_code in (200, 503)  # open: nothing published here
    monkeypatch.delenv("MILLPOND_API_KEYS")
    settings.get_settings.cache_clear()
    assert client.get("/metrics").status_code == 200


def test_without_keys_other_machines_are_refused(client: TestClient) -> None:
    other = TestClient(client.app, client=("10.1.2.3", 5555))
    response = other.get("/runs")
    assert response.status_code == 403 and "127.0.0.1" in response.json()["detail"]


def test_a_second_trigger_while_a_run_holds_the_lock_is_409(client: TestClient) -> None:
    from millpond.serve.settings import get_stack_config

    lock = get_stack_config().locks_dir / "run.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        ledger = Ledger(str(get_stack_config().metadata.url), lock.parent / "b.jsonl")
        ledger.write(RunStarted("20261128T000000Z-running", "prefect", "cli", "duckdb"))
        ledger.close()
        response = client.post("/runs")
    assert response.status_code == 409
    assert response.json()["run_id"] == "20261128T000000Z-running"


def test_the_dashboard_renders_tables_and_plot_data(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "/static/vendor/uPlot.iife.min.js" in page.text and "cdn" not in page.text.lower()
    assert "t_unique" in page.text and "2026112" in page.text
    assert client.get("/static/vendor/uPlot.iife.min.js").status_code == 200


def test_docs_assets_are_served_locally(client: TestClient) -> None:
    for path in ("/docs", "/redoc"):
        html = client.get(path).text
        assert "cdn.jsdelivr" not in html and "/assets/docs/" in html
    assert client.get("/assets/docs/swagger-ui-bundle.js").status_code == 200
    assert client.get("/assets/docs/redoc.standalone.js").status_code == 200
    assert "/runs" in client.get("/openapi.json").json()["paths"]


def test_ledger_down_is_503_with_the_reason_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    with api_over(dead, tmp_path, monkeypatch) as down:
        for path in ("/runs", "/runs/x", "/runs/x/nodes", "/jobs", "/tables", "/tests", "/"):
            response = down.get(path)
            assert response.status_code == 503, path
            assert "metadata database unavailable" in response.json()["detail"]
        health = down.get("/health")
        assert health.status_code == 503 and "unavailable" in health.json()["ledger"]
        metrics = down.get("/metrics")
        assert metrics.status_code == 200 and "millpond_ledger_up 0.0" in metrics.text
