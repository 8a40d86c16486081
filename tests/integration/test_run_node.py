"""`millpond run-node`, the command each task of the generated Airflow DAG runs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import psycopg
import pytest
from conftest import BIN, millpond
from psycopg.rows import dict_row

pytestmark = pytest.mark.integration


def test_run_node_records_an_airflow_attempt(project: Path, machine_pg: str) -> None:
    env = {"MILLPOND_METADATA__URL": machine_pg}
    result = millpond(project, "run-node", "extract.erp.region", "--run-id", "af-1", env=env)
    assert result.returncode == 0, result.stderr
    loaded = millpond(
        project, "run-node", "load.erp.region", "--run-id", "af-1", "--attempt", "2", env=env
    )
    assert loaded.returncode == 0, loaded.stderr
    with psycopg.connect(machine_pg, row_factory=dict_row) as conn:
        run = conn.execute("select * from millpond.runs where run_id = 'af-1'").fetchone()
        nodes = conn.execute(
            "select node_id, attempt, status, rows from millpond.node_runs"
            " where run_id = 'af-1' order by node_id"
        ).fetchall()
    assert run is not None and run["status"] == "running"  # the DAG run is still going
    assert run["orchestrator"] == "airflow"
    assert nodes == [
        {"node_id": "extract.erp.region", "attempt": 1, "status": "success", "rows": 5},
        {"node_id": "load.erp.region", "attempt": 2, "status": "success", "rows": 5},
    ]


def test_run_node_rejects_an_unknown_node(project: Path, machine_pg: str) -> None:
    env = {"MILLPOND_METADATA__URL": machine_pg}
    result = millpond(project, "run-node", "extract.erp.nope", "--run-id", "af-2", env=env)
    assert result.returncode == 2
    assert "unknown node 'extract.erp.nope'" in result.stdout + result.stderr


def test_parallel_run_nodes_parse_dbt_without_tripping_over_each_other(
    project: Path, machine_pg: str, tmp_path: Path
) -> None:
    """Airflow starts many tasks at once; each parses the dbt project into the same target
    (an empty parse cache: no earlier parse to start from)."""
    env = {
        **os.environ,
        "MILLPOND_METADATA__URL": machine_pg,
        "MILLPOND_CACHE_DIR": str(tmp_path / "cache"),
    }
    command = [str(BIN / "millpond"), "graph", "--json"]
    runs = [
        subprocess.Popen(
            command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(6)
    ]
    outputs = [p.communicate(timeout=300) for p in runs]
    assert [p.returncode for p in runs] == [0] * 6, [err[-500:] for _, err in outputs]
    assert all(json.loads(out)["nodes"] for out, _ in outputs)


def test_run_node_with_a_broken_dbt_project_exits_2_with_a_message(
    project: Path, machine_pg: str
) -> None:
    env = {"MILLPOND_METADATA__URL": machine_pg, "MILLPOND_DBT__PROJECT_DIR": str(project / "nope")}
    result = millpond(project, "run-node", "dbt.stg_erp__region", "--run-id", "af-3", env=env)
    assert result.returncode == 2
    assert "no dbt_project.yml" in result.stdout + result.stderr
    # extract and load nodes do not need dbt at all
    ok = millpond(project, "run-node", "extract.erp.region", "--run-id", "af-3", env=env)
    assert ok.returncode == 0, ok.stderr


def test_a_stalled_cursor_under_airflow_tasks_reaches_the_runs_summary(
    tmp_path: Path, machine_pg: str
) -> None:
    """The stall warning of a REST table whose API ignores its cursor, run as the generated
    DAG runs it (run-start, run-node extract..., run-finish): the extract task's warning is in
    the run's ledger summary, as under Prefect, not only in the task's log."""
    import shutil
    import uuid

    import yaml
    from conftest import REPO
    from rest_server import TOKEN, serve_api

    root = tmp_path / "crm"
    shutil.copytree(REPO / "tests" / "fixtures" / "crm_dbt", root / "dbt")
    crm = {
        "kind": "rest",
        "base_url": "${CRM_URL}",
        "auth": {"type": "bearer", "token": "${CRM_TOKEN}"},
        "stall_runs": 1,
        "tables": {
            "events": {
                "path": "/secure/events/ignoring",  # sends every record, whatever the cursor
                "record_path": "events",
                "incremental": {"cursor_field": "updated_at", "param": "updated_since"},
                "primary_key": ["id"],
            }
        },
    }
    config = {
        "project": "crm",
        "dbt": {"project_dir": "dbt"},
        "airflow": {"warm_worker": False},
        "sources": {"crm": crm},
    }
    (root / "millpond.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    runs = [f"af-stall-{uuid.uuid4().hex[:6]}-{n}" for n in (1, 2)]
    with serve_api() as (base, api):
        env = {"CRM_URL": base, "CRM_TOKEN": TOKEN, "MILLPOND_METADATA__URL": machine_pg}
        api.events = [
            {"id": 1, "status": "new", "updated_at": "2026-01-01T10:00:00Z"},
            {"id": 2, "status": "new", "updated_at": "2026-01-01T11:00:00Z"},
        ]
        outputs = []
        for run_id in runs:
            for args in (
                ["run-start", "--run-id", run_id, "--trigger", "manual"],
                ["run-node", "extract.crm.events", "--run-id", run_id],
                ["run-finish", "--run-id", run_id],
            ):
                done = millpond(root, *args, env=env)
                # run-finish fails the run: the DAG's other tasks did not run here
                assert done.returncode in ((0, 1) if args[0] == "run-finish" else (0,)), (
                    args,
                    done.stdout + done.stderr,
                )
                outputs.append(done.stdout + done.stderr)
    with psycopg.connect(machine_pg, row_factory=dict_row) as conn:
        summaries = {
            r["run_id"]: r["summary"]
            for r in conn.execute(
                "select run_id, summary from millpond.runs where run_id = any(%s)", (runs,)
            )
        }
    first, stalled = (summaries[r] for r in runs)
    assert not first.get("warnings"), first
    [warning] = stalled["warnings"]
    assert warning.startswith("extract.crm.events: crm.events: cursor stalled"), warning
    assert stalled["nodes"]["extract.crm.events"] == "success"
