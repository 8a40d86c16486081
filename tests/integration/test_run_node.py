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
