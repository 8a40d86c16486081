"""`kind: rest` end to end: docs/sources.md's example, run by `millpond run` against a real
HTTP server on 127.0.0.1, twice, with new and changed records in between."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
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
