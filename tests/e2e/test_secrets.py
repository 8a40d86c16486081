"""The secrets scan: no secret reaches anything a run writes or shows.

One stack holds a known secret in every place one can sit: a database password in a sql
source's URL, an ODBC `PWD=`, S3 credentials of a `files` source, REST credentials of every
auth type (bearer, basic, api_key in a header and in the query) and in `headers:` (a token,
a cookie) and `params:`, the PostgreSQL target's password URL, webhook notifiers' token URLs
and dbt vars (one named like a secret, one listed in `dbt.secret_vars`) that a model renders
into its SQL. Each fails once (a broken table or model per source, a closed webhook, a
warehouse database that does not exist) and succeeds once. The environment variables carry
plain names (`DB_P`, not `DB_PASSWORD`), so only the masking policy can find the secrets.

Then every file under the state dir, the session's Prefect database and dbt parse cache, the
console of every command (`run`, `config`, `dag`, `status`, `logs`, `docs`), every ledger table
and the API's responses are searched for each secret.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from conftest import REPO, free_port, millpond, postgres_execute, s3_client, shared_dir
from rest_server import TOKEN, serve_api
from serve_helpers import api_for

pytestmark = pytest.mark.e2e

SECRETS = {
    "sql password": "db-pw-5e7c1a",
    "odbc password": "odbc-pw-9b2d44",
    "s3 secret key": "s3-secret-scan-61d0",
    "rest token (bearer, basic, api_key)": TOKEN,
    "rest header token": "hdr-tok-3a9f52",
    "rest cookie": "cookie-val-8e21c7",
    "rest query token": "qry-tok-70b4de",
    "warehouse password": "wh-pw-2c7e95",
    "webhook token": "whk0token4c1e9a77",
    "webhook query token": "whkq-tok-19fd3b",
    "dbt var named like a secret": "tok-api-71f0c3",
    "dbt var in secret_vars": "salt-val-0d83e6",
}
SECRET_MODEL = "select md5('{{ var(\"salt\") }}' || '{{ var(\"api_token\") }}') as fingerprint\n"
BROKEN_MODEL = "select '{{ var(\"salt\") }}' as salt from no_such_relation\n"


class Hooks:
    """A webhook receiver on 127.0.0.1: what was posted to it."""

    def __init__(self) -> None:
        self.bodies: list[str] = []


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, Hooks]]:
    hooks = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            hooks.bodies.append(self.rfile.read(length).decode())
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hooks
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def role_with_password(server: str, database: str, password: str) -> Iterator[str]:
    """A login role with a password (trust auth ignores it; it must be written nowhere)."""
    role = f"scan_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"create role {role} login superuser password '{password}'")
    try:
        yield role
    finally:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(f"reassign owned by {role} to postgres")
            conn.execute(f"drop owned by {role}")
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"drop role if exists {role}")


def scan_config(database: str, bucket: str) -> dict[str, Any]:
    odbc = (
        "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;"
        f"Database={database};Uid=postgres;PWD=${{ODBC_P}};"
    )
    rest = {"kind": "rest", "base_url": "${CRM_URL}"}
    return {
        "project": "secrets",
        "warehouse": {"target": "postgres", "url": "${WH_URL}", "reader_role": None},
        "dbt": {
            "project_dir": "dbt",
            "vars": {"api_token": "${DBT_V}", "salt": "${SALT_V}"},
            "secret_vars": ["salt"],
        },
        "notify": [
            {"webhook": "${HOOK_OK}", "on": ["failure", "success"], "retries": 0},
            {"webhook": "${HOOK_DOWN}", "on": ["failure"], "retries": 0},
        ],
        "sources": {
            "db": {
                "kind": "sql",
                "url": f"postgresql://postgres:${{DB_P}}@127.0.0.1:5432/{database}",
                "tables": {"customers": {}, "broken": {"table": "no_such_table"}},
            },
            "erp": {
                "kind": "odbc",
                "connection_string": odbc,
                "tables": {"customers": {}, "broken": {"query": "select * from nowhere"}},
            },
            "shop": {"kind": "files", "path": "inbox", "tables": ["orders"]},
            "cloud": {
                "kind": "files",
                "path": f"s3://{bucket}/exports/",
                "tables": ["orders"],
                "s3": {
                    "endpoint_url": "${S3_URL}",
                    "region": "us-east-1",
                    "access_key_id": "scan-key-id",
                    "secret_access_key": "${S3_S}",
                },
            },
            "gone": {
                "kind": "files",
                "path": "s3://no-such-bucket-scan/exports/",
                "tables": ["orders"],
                "s3": {
                    "endpoint_url": "${S3_URL}",
                    "region": "us-east-1",
                    "access_key_id": "scan-key-id",
                    "secret_access_key": "${S3_S}",
                },
            },
            "crm": {
                **rest,
                "auth": {"type": "bearer", "token": "${CRM_T}"},
                "headers": {"X-Custom-Token": "${HDR_T}", "Cookie": "sid=${CK_V}"},
                "tables": {
                    "customers": {"path": "/secure/pages", "record_path": "data.items"},
                    "broken": {"path": "/secure/nowhere", "params": {"access_token": "${Q_T}"}},
                },
            },
            "keyed": {
                **rest,
                "auth": {"type": "api_key", "name": "X-API-Key", "value": "${CRM_T}"},
                "tables": {"customers": {"path": "/key"}, "broken": {"path": "/nowhere"}},
            },
            "queried": {
                **rest,
                "auth": {"type": "api_key", "name": "api_key", "value": "${CRM_T}", "in": "query"},
                "tables": {"customers": {"path": "/key"}},
            },
            "basic": {
                **rest,
                "auth": {"type": "basic", "username": "ann", "password": "${CRM_T}"},
                "tables": {"customers": {"path": "/basic", "record_path": "data"}},
            },
        },
    }


def ledger_rows(url: str) -> list[str]:
    """Every row of every table of the ledger's schema, as JSON."""
    with psycopg.connect(url) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "select table_name from information_schema.tables where table_schema = 'millpond'"
            ).fetchall()
        ]
        return [
            json.dumps(row[0], default=str)
            for table in tables
            for row in conn.execute(f'select row_to_json(t) from millpond."{table}" t').fetchall()
        ]


def files_under(*folders: Path) -> dict[str, bytes]:
    found = {}
    for folder in folders:
        for path in folder.rglob("*") if folder.is_dir() else []:
            if path.is_file() and "pg" not in path.relative_to(folder).parts:
                with contextlib.suppress(OSError):  # removed while we looked (a temp file)
                    found[str(path)] = path.read_bytes()
    return found


def api_texts(config_file: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    texts = {}
    with api_for(config_file, monkeypatch) as client:
        runs = client.get("/runs").json()
        run_ids = [r["run_id"] for r in runs] if isinstance(runs, list) else []
        paths = ["/", "/health", "/runs", "/jobs", "/metrics", "/tables", "/tests", "/marts"]
        paths += ["/openapi.json", "/runs?status=failed"]
        for run_id in run_ids:
            paths += [f"/runs/{run_id}", f"/runs/{run_id}/nodes"]
        for path in paths:
            texts[f"API {path}"] = client.get(path).text
    return texts


def test_secrets_scan_every_kind_fails_once_and_leaks_nowhere(
    tmp_path: Path,
    machine_pg: str,
    pg_server: str,
    prefect_api: str,
    s3_server: str,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if "@127.0.0.1" not in machine_pg:
        pytest.skip("the ODBC source and the password role need the machine's PostgreSQL")
    postgres_execute(
        machine_pg,
        "create table customers (id integer primary key, name text)",
        "insert into customers values (1, 'Ada')",
    )
    database = machine_pg.rsplit("/", 1)[1]
    root = tmp_path / "secrets"
    shutil.copytree(REPO / "tests" / "fixtures" / "acme_dbt", root / "dbt")
    (root / "dbt" / "models" / "salted.sql").write_text(SECRET_MODEL)
    (root / "dbt" / "models" / "salted_broken.sql").write_text(BROKEN_MODEL)
    shutil.copytree(REPO / "tests" / "fixtures" / "acme_inbox", root / "inbox")
    s3 = s3_client(s3_server)
    s3.upload_file(str(root / "inbox" / "orders.csv"), s3_bucket, "exports/orders.csv")
    config_file = root / "millpond.yml"
    config_file.write_text(yaml.safe_dump(scan_config(database, s3_bucket), sort_keys=False))
    closed = free_port()
    outputs: dict[str, str] = {}
    with (
        role_with_password(pg_server, machine_pg, SECRETS["warehouse password"]) as role,
        serve_api() as (base, _),
        webhook_receiver() as (hook_base, hooks),
    ):
        warehouse = f"postgresql://{role}:{SECRETS['warehouse password']}@127.0.0.1:5432/"
        env = {
            "DB_P": SECRETS["sql password"],
            "ODBC_P": SECRETS["odbc password"],
            "S3_URL": s3_server,
            "S3_S": SECRETS["s3 secret key"],
            "AWS_EC2_METADATA_DISABLED": "true",
            "CRM_URL": base,
            "CRM_T": TOKEN,
            "HDR_T": SECRETS["rest header token"],
            "CK_V": SECRETS["rest cookie"],
            "Q_T": SECRETS["rest query token"],
            "WH_URL": warehouse + database,
            "HOOK_OK": f"{hook_base}/hooks/{SECRETS['webhook token']}",
            "HOOK_DOWN": f"http://127.0.0.1:{closed}/hooks/{SECRETS['webhook token']}"
            f"?token={SECRETS['webhook query token']}",
            "DBT_V": SECRETS["dbt var named like a secret"],
            "SALT_V": SECRETS["dbt var in secret_vars"],
            "MILLPOND_METADATA__URL": machine_pg,
        }
        try:
            first = millpond(root, "run", env=env)
            outputs["run"] = first.stdout + first.stderr
            # The warehouse fails: its database does not exist (the password is in the URL).
            second = millpond(root, "run", env={**env, "WH_URL": warehouse + "no_such_db"})
            outputs["run, warehouse missing"] = second.stdout + second.stderr
            for command in (
                ["config"],
                ["dag", "--output", str(root / "dag.py")],
                ["status"],
                ["docs", "--no-serve"],
            ):
                done = millpond(root, *command, env=env)
                outputs[" ".join(command)] = done.stdout + done.stderr
            with psycopg.connect(machine_pg) as conn:
                run_ids = [r for (r,) in conn.execute("select run_id from millpond.runs")]
            for run_id in run_ids:
                done = millpond(root, "logs", run_id, "--level", "DEBUG", env=env)
                outputs[f"logs {run_id}"] = done.stdout + done.stderr
            api = api_texts(config_file, env, monkeypatch)
        finally:
            millpond(root, "down", env=env)
        ledger = ledger_rows(machine_pg)

    # Each kind failed once and (where it can here) succeeded once.
    assert first.returncode == 1 and second.returncode != 0, outputs
    nodes = {
        (row["node_id"], row["status"])
        for row in map(json.loads, ledger)
        if "node_id" in row and "status" in row
    }
    for failed in ("db.broken", "erp.broken", "crm.broken", "keyed.broken", "gone.orders"):
        assert (f"extract.{failed}", "failed") in nodes, failed
    assert ("dbt.salted_broken", "failed") in nodes
    for loaded in ("db.customers", "cloud.orders", "crm.customers", "keyed.customers"):
        assert (f"load.{loaded}", "success") in nodes, loaded
    for loaded in ("queried.customers", "basic.customers"):
        assert (f"load.{loaded}", "success") in nodes, loaded
    assert ("dbt.salted", "success") in nodes
    assert hooks.bodies, "the reachable webhook was told about the failed runs"
    assert len(run_ids) == 2
    assert any("no_such_table" in row for row in ledger), "the errors reached the ledger"
    assert (root / "dag.py").is_file() and (root / ".millpond" / "docs" / "index.html").is_file()

    texts: dict[str, bytes] = {name: text.encode() for name, text in outputs.items()}
    texts |= {name: text.encode() for name, text in api.items()}
    texts["ledger"] = "\n".join(ledger).encode()
    texts["webhook bodies"] = "\n".join(hooks.bodies).encode()
    texts["dag"] = (root / "dag.py").read_bytes()
    texts |= files_under(root / ".millpond", root / "dbt", shared_dir() / "prefect-home")
    texts |= files_under(Path(os.environ["MILLPOND_CACHE_DIR"]))
    assert any(name.endswith("dbt.log") for name in texts)
    assert any(name.endswith("prefect.db") for name in texts)  # task parameters, logs
    assert any("target/run" in name for name in texts) and any("compiled" in name for name in texts)
    assert any(name.endswith(".jsonl") for name in texts)
    leaks = [
        (what, name)
        for what, secret in SECRETS.items()
        for name, text in texts.items()
        if secret.encode() in text
    ]
    assert leaks == []
