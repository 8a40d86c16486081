"""`kind: rest` end to end: docs/sources.md's example, run by `millpond run` against a real
HTTP server on 127.0.0.1, twice, with new and changed records in between."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import psycopg
import pytest
import yaml
from conftest import REPO, millpond
from rest_server import TOKEN, serve_api
from test_run_sql_source import doc_example

pytestmark = pytest.mark.e2e


def test_the_documented_rest_source_runs_incrementally_end_to_end(
    tmp_path: Path, prefect_api: str
) -> None:
    root = tmp_path / "crm"
    shutil.copytree(REPO / "tests" / "fixtures" / "crm_dbt", root / "dbt")
    config = {"project": "crm", "dbt": {"project_dir": "dbt"}, **doc_example("rest")}
    (root / "millpond.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    query = "select customer_id, city, status from main.customer_status order by 1"
    try:
        with serve_api() as (base, api):
            env = {"CRM_URL": base, "CRM_TOKEN": TOKEN}
            api.events = [{"id": 1, "status": "new", "updated_at": "2026-01-01T10:00:00Z"}]
            first = millpond(root, "run", env=env)
            assert first.returncode == 0, first.stdout + first.stderr
            api.events = [
                {"id": 1, "status": "paid", "updated_at": "2026-01-02T10:00:00Z"},
                {"id": 2, "status": "new", "updated_at": "2026-01-02T11:00:00Z"},
            ]
            second = millpond(root, "run", env=env)
            assert second.returncode == 0, second.stdout + second.stderr
    finally:
        millpond(root, "down")
    snapshot = root / ".millpond" / "published" / "current"
    with duckdb.connect(str(snapshot), read_only=True) as con:
        rows = con.execute(query).fetchall()
    assert rows[:3] == [(1, "Graz", "paid"), (2, "Graz", "new"), (3, "Graz", "none")]
    assert len(rows) == 7
    logs = "".join(p.read_text() for p in (root / ".millpond" / "logs").glob("*.jsonl"))
    assert TOKEN not in logs and TOKEN not in first.stdout + second.stdout


def test_an_api_that_ignores_the_cursor_warns_keeps_landing_and_a_wrong_token_fails(
    tmp_path: Path, machine_pg: str, prefect_api: str
) -> None:
    """The stall of issue 23: an API that ignores `updated_since` used to stop the table for
    good (0 rows, green runs, no request, even with a wrong token). Now every run asks, a
    stalled cursor is a warning in the summary and the ledger, a record added later lands,
    and a wrong token fails the run."""
    root = tmp_path / "crm"
    shutil.copytree(REPO / "tests" / "fixtures" / "crm_dbt", root / "dbt")
    config = {"project": "crm", "dbt": {"project_dir": "dbt"}, **doc_example("rest")}
    crm = config["sources"]["crm"]
    crm["stall_runs"] = 1
    crm["tables"]["events"]["path"] = "/secure/events/ignoring"
    (root / "millpond.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {"CRM_TOKEN": TOKEN, "MILLPOND_METADATA__URL": machine_pg}
    try:
        with serve_api() as (base, api):
            env["CRM_URL"] = base
            api.events = [
                {"id": 1, "status": "new", "updated_at": "2026-01-01T10:00:00Z"},
                {"id": 2, "status": "new", "updated_at": "2026-01-01T11:00:00Z"},
            ]
            first = millpond(root, "run", env=env)
            stalled = millpond(root, "run", env=env)
            api.events.append({"id": 3, "status": "paid", "updated_at": "2026-01-02T09:00:00Z"})
            later = millpond(root, "run", env=env)
            asked = api.calls["/secure/events/ignoring"]
            wrong = millpond(root, "run", env={**env, "CRM_TOKEN": "not-the-token"})
    finally:
        millpond(root, "down", env=env)

    for run in (first, stalled, later):
        assert run.returncode == 0, run.stdout + run.stderr
    assert "cursor stalled" in stalled.stdout and "cursor stalled" not in later.stdout
    assert asked == 3  # every run asked the API
    assert wrong.returncode == 1 and "HTTP 401" in wrong.stdout, wrong.stdout + wrong.stderr
    snapshot = root / ".millpond" / "published" / "current"
    with duckdb.connect(str(snapshot), read_only=True) as con:
        rows = con.execute(query_status()).fetchall()
    assert rows[:3] == [(1, "Graz", "new"), (2, "Graz", "new"), (3, "Graz", "paid")]
    with psycopg.connect(machine_pg) as conn:
        summaries = [
            row[0] for row in conn.execute("select summary from millpond.runs order by started_at")
        ]
    warned = [s.get("warnings", []) for s in summaries if s]
    assert [len(w) for w in warned[:3]] == [0, 1, 0]
    assert warned[1][0].startswith("extract.crm.events: crm.events: cursor stalled")


def query_status() -> str:
    return "select customer_id, city, status from main.customer_status order by 1"
