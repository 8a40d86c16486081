"""No secret reaches anything a run writes: logs, the ledger, manifests, errors, the generated
dbt profile, dbt's own logs, the Airflow DAG, the command's output.

A run whose sources use a database password (sql), an ODBC password inside the connection
string and API tokens (a REST source's bearer token, a dbt var from the environment), with one
failing table per source so the errors are written too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg
import pytest
import yaml
from conftest import REPO, millpond, postgres_execute
from rest_server import TOKEN, serve_api

pytestmark = pytest.mark.e2e

DB_PASSWORD = "db-pw-5e7c1a"
REST_TOKEN = TOKEN
ODBC_PASSWORD = "odbc-pw-9b2d44"
API_TOKEN = "tok-api-71f0c3"
SECRETS = (DB_PASSWORD, ODBC_PASSWORD, API_TOKEN, REST_TOKEN)


def test_no_secret_in_logs_ledger_manifests_errors_profile_or_dag(
    tmp_path: Path, machine_pg: str, prefect_api: str
) -> None:
    if "@127.0.0.1" not in machine_pg:
        pytest.skip("the ODBC source needs the machine's PostgreSQL over TCP")
    postgres_execute(
        machine_pg,
        "create table customers (id integer primary key, name text)",
        "insert into customers values (1, 'Ada')",
    )
    database = machine_pg.rsplit("/", 1)[1]
    root = tmp_path / "secrets"
    shutil.copytree(REPO / "tests" / "fixtures" / "acme_dbt", root / "dbt")
    config = {
        "project": "secrets",
        "dbt": {"project_dir": "dbt", "vars": {"api_token": "${API_TOKEN}"}},
        "sources": {
            "db": {
                "kind": "sql",
                "url": machine_pg.replace("postgres@", "postgres:${DB_PASSWORD}@"),
                "tables": {"customers": {}, "broken": {"table": "no_such_table"}},
            },
            "erp": {
                "kind": "odbc",
                "connection_string": "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;"
                f"Database={database};Uid=postgres;PWD=${{ODBC_PASSWORD}};",
                "tables": {"customers": {}, "broken": {"query": "select * from nowhere"}},
            },
            "shop": {"kind": "files", "path": "inbox", "tables": ["orders"]},
            "crm": {
                "kind": "rest",
                "base_url": "${CRM_URL}",
                "auth": {"type": "bearer", "token": "${CRM_TOKEN}"},
                "tables": {
                    "customers": {"path": "/secure/pages", "record_path": "data.items"},
                    "broken": {"path": "/secure/nowhere"},
                },
            },
        },
    }
    (root / "millpond.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copytree(REPO / "tests" / "fixtures" / "acme_inbox", root / "inbox")
    env = {
        "DB_PASSWORD": DB_PASSWORD,
        "ODBC_PASSWORD": ODBC_PASSWORD,
        "API_TOKEN": API_TOKEN,
        "MILLPOND_METADATA__URL": machine_pg,
    }
    try:
        with serve_api() as (base, _):
            env |= {"CRM_URL": base, "CRM_TOKEN": REST_TOKEN}
            run = millpond(root, "run", env=env)
            dag = millpond(root, "dag", "--output", str(root / "dag.py"), env=env)
            shown = millpond(root, "config", env=env)
    finally:
        millpond(root, "down")

    assert run.returncode == 1, run.stdout + run.stderr  # the broken tables fail, as meant
    assert "db.broken" in run.stdout and "erp.broken" in run.stdout
    assert "crm.broken" in run.stdout and "load.crm.customers" in run.stdout
    assert dag.returncode == 0 and shown.returncode == 0
    with psycopg.connect(machine_pg) as conn:
        ledger = [
            json.dumps(row[0], default=str)
            for table in ("runs", "node_runs", "partitions", "source_state", "test_results")
            for row in conn.execute(f"select row_to_json(t) from millpond.{table} t").fetchall()
        ]
    assert any("no_such_table" in line for line in ledger), "the errors reached the ledger"
    written = [p for p in (root / ".millpond").rglob("*") if p.is_file() and p.stat().st_size]
    written = [
        p for p in written if p.suffix not in (".parquet", ".duckdb") and "pg" not in p.parts
    ]
    texts = {
        "run output": run.stdout + run.stderr,
        "dag": (root / "dag.py").read_text(),
        "config output": shown.stdout,
        "ledger": "\n".join(ledger),
        **{str(p.relative_to(root)): p.read_text(errors="replace") for p in written},
    }
    assert any(name.endswith("_manifest.json") for name in texts)
    assert any("logs" in name and name.endswith(".jsonl") for name in texts)
    leaks = [(name, s) for name, text in texts.items() for s in SECRETS if s in text]
    assert leaks == []
