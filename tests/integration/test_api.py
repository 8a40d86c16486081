"""The API over a real ledger on the machine's PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serve_helpers import api_over

from millpond.metadata.db import migrate
from millpond.metadata.ledger import Ledger
from millpond.metadata.records import (
    DataTestResults,
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunStarted,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def client(
    tmp_path: Path, machine_pg: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    migrate(machine_pg)
    ledger = Ledger(machine_pg, tmp_path / "buffer.jsonl")
    ledger.write(RunStarted("r1", "prefect", "cli", "duckdb"))
    ledger.write(NodeStarted("r1", "load.erp.orders", "load", 1))
    ledger.write(NodeFinished("r1", "load.erp.orders", 1, "success", 120, rows=15000, bytes=5))
    ledger.write(
        DataTestResults("r1", "dbt.fct_orders", [{"test": "t1", "status": "fail", "failures": 3}])
    )
    ledger.write(RunFinished("r1", "failed", error="failed nodes: dbt.fct_orders"))
    ledger.close()
    with api_over(machine_pg, tmp_path, monkeypatch) as test_client:
        yield test_client


def test_runs_list_and_detail_come_from_the_ledger(client: TestClient) -> None:
    runs = client.get("/runs").json()["items"]
    assert [(r["run_id"], r["status"], r["tests_failed"]) for r in runs] == [("r1", "failed", 1)]
    detail = client.get("/runs/r1").json()
    assert detail["error"] == "failed nodes: dbt.fct_orders"
    assert detail["tests"][0]["test"] == "t1" and detail["tests"][0]["failures"] == 3
    nodes = client.get("/runs/r1/nodes").json()
    assert [(n["node_id"], n["rows"]) for n in nodes] == [("load.erp.orders", 15000)]


def test_a_fresh_ledger_answers_with_no_runs(
    tmp_path: Path, machine_pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with api_over(machine_pg, tmp_path, monkeypatch) as fresh:
        assert fresh.get("/runs").json() == {"items": [], "total": 0, "limit": 50, "offset": 0}


def test_unknown_run_is_404_and_health_says_what_is_missing(client: TestClient) -> None:
    assert client.get("/runs/nope").status_code == 404
    assert client.get("/runs/nope/nodes").status_code == 404
    health = client.get("/health")
    assert health.status_code == 503  # the ledger is fine, nothing is published
    assert health.json()["ledger"] == "ok"
    assert "nothing published" in health.json()["marts"]
