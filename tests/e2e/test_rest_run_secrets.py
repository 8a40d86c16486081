"""`kind: rest` through `millpond run`, three times, against a real HTTP server on 127.0.0.1:
docs/sources.md's example with new and changed records between runs. Raw holds every version
once, the ledger's cursor equals the largest value landed, and the API token (bearer, and in a
query param of a table that fails) is in no log, ledger row, manifest, error, DAG or output."""

from __future__ import annotations

import json
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

RUNS = [
    [{"id": 1, "status": "new", "updated_at": "2026-01-01T10:00:00Z"}],
    [
        {"id": 1, "status": "paid", "updated_at": "2026-01-02T10:00:00Z"},
        {"id": 2, "status": "new", "updated_at": "2026-01-02T11:00:00Z"},
    ],
    [
        {"id": 1, "status": "paid", "updated_at": "2026-01-02T10:00:00Z"},
        {"id": 2, "status": "paid", "updated_at": "2026-01-03T09:00:00Z"},
        {"id": 3, "status": "new", "updated_at": "2026-01-03T10:00:00Z"},
    ],
]


def test_three_rest_runs_land_each_version_once_and_leak_no_token(
    tmp_path: Path, machine_pg: str, prefect_api: str
) -> None:
    root = tmp_path / "crm"
    shutil.copytree(REPO / "tests" / "fixtures" / "crm_dbt", root / "dbt")
    config = {"project": "crm", "dbt": {"project_dir": "dbt"}, **doc_example("rest")}
    (root / "millpond.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    outputs: list[str] = []
    try:
        with serve_api() as (base, api):
            env = {"CRM_URL": base, "CRM_TOKEN": TOKEN, "MILLPOND_METADATA__URL": machine_pg}
            for events in RUNS:
                api.events = events
                run = millpond(root, "run", env=env)
                outputs.append(run.stdout + run.stderr)
                assert run.returncode == 0, outputs[-1]
            # A table that fails, with the token in its query: the error is written everywhere.
            tables = config["sources"]["crm"]["tables"]
            tables["broken"] = {"path": "/nowhere", "params": {"access_token": "${CRM_TOKEN}"}}
            (root / "millpond.yml").write_text(yaml.safe_dump(config, sort_keys=False))
            failed = millpond(root, "run", env=env)
            outputs.append(failed.stdout + failed.stderr)
            dag = millpond(root, "dag", "--output", str(root / "dag.py"), env=env)
            shown = millpond(root, "config", env=env)
    finally:
        millpond(root, "down")

    assert failed.returncode == 1 and "crm.broken" in failed.stdout, outputs[-1]
    assert dag.returncode == 0 and shown.returncode == 0
    lake = root / ".millpond" / "lake" / "raw" / "crm" / "events"
    with duckdb.connect() as con:
        versions = con.execute(
            f"select id, status, updated_at from read_parquet('{lake}/**/*.parquet') order by all"
        ).fetchall()
    landed = sorted((e["id"], e["status"], e["updated_at"]) for run in RUNS for e in run)
    assert versions == sorted(set(landed))  # every version exactly once
    with psycopg.connect(machine_pg) as conn:
        (cursor,) = conn.execute(
            "select cursor from millpond.source_state "
            "where source = 'crm' and table_name = 'events'"
        ).fetchone()
        ledger = [
            json.dumps(row[0], default=str)
            for table in ("runs", "node_runs", "partitions", "source_state")
            for row in conn.execute(f"select row_to_json(t) from millpond.{table} t").fetchall()
        ]
    assert cursor == max(v[2] for v in versions) == "2026-01-03T10:00:00Z"
    assert any("/nowhere" in line and "HTTP 404" in line for line in ledger), "error in ledger"

    snapshot = root / ".millpond" / "published" / "current"
    with duckdb.connect(str(snapshot), read_only=True) as con:
        statuses = con.execute(
            "select customer_id, status from main.customer_status order by 1"
        ).fetchall()
    assert statuses[:4] == [(1, "paid"), (2, "paid"), (3, "new"), (4, "none")]

    written = [p for p in (root / ".millpond").rglob("*") if p.is_file() and p.stat().st_size]
    written = [
        p for p in written if p.suffix not in (".parquet", ".duckdb") and "pg" not in p.parts
    ]
    texts = {
        "outputs": "\n".join(outputs),
        "dag": (root / "dag.py").read_text(),
        "config output": shown.stdout,
        "ledger": "\n".join(ledger),
        **{str(p.relative_to(root)): p.read_text(errors="replace") for p in written},
    }
    assert sum(name.endswith("_manifest.json") for name in texts) >= 4
    assert any("logs" in name and name.endswith(".jsonl") for name in texts)
    assert [name for name, text in texts.items() if TOKEN in text] == []
