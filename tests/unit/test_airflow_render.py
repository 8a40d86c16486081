"""The Airflow DAG file renders the same graph, parses as Python and imports no millpond."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from airflow_compat.render import render_dag
from millpond.core.config import MillpondConfig
from millpond.core.graph import Graph, Node, topological


def graph() -> Graph:
    return Graph(
        topological(
            [
                Node("extract.erp.orders", "extract", retries=2),
                Node("load.erp.orders", "load", ("extract.erp.orders",)),
                Node("dbt.stg_erp__orders", "dbt", ("load.erp.orders",), timeout_seconds=60),
                Node("publish", "publish", ("dbt.stg_erp__orders",)),
            ]
        )
    )


def test_dag_file_has_every_node_and_edge_and_no_millpond_import(tmp_path: Path) -> None:
    source = render_dag(graph(), MillpondConfig(), "/opt/my env/bin/millpond", tmp_path / "m.yml")
    tree = ast.parse(source)
    imports = {
        alias.name if isinstance(node, ast.Import) else node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not any(str(name).startswith(("millpond", "ingest", "flows")) for name in imports)
    task_ids = [
        kw.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for kw in node.keywords
        if kw.arg == "task_id"
    ]
    assert task_ids == ["run_start", "run_finish", *[n.id for n in graph().nodes]]
    edges = [
        (n.left.slice.value, n.right.slice.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.BinOp)
        and isinstance(n.op, ast.RShift)
        and isinstance(n.left, ast.Subscript)
    ]
    assert edges == graph().edges()
    assert 'run-node {node} --attempt "$MILLPOND_ATTEMPT"' in source
    assert 'RUN = \' --run-id "$MILLPOND_RUN_ID" --orchestrator airflow' in source
    assert '"MILLPOND_RUN_TYPE": "{{ dag_run.run_type }}"' in source
    assert 'trigger_rule="all_done"' in source
    assert '"MILLPOND_RUN_ID": "{{ run_id }}"' in source
    assert "retries=2" in source and "execution_timeout=datetime.timedelta(seconds=60)" in source


def test_paths_with_spaces_are_quoted_for_the_shell(tmp_path: Path) -> None:
    source = render_dag(graph(), MillpondConfig(), "/opt/my env/bin/millpond", tmp_path / "m.yml")
    namespace: dict[str, object] = {}
    header = source.split("with DAG(")[0].replace("from airflow", "# from airflow")
    namespace["__file__"] = str(tmp_path / "dags" / "m.py")
    exec(header, namespace)
    command = str(namespace["COMMAND"]).format(node="publish")
    assert command.startswith("'/opt/my env/bin/millpond' run-node publish")


def test_paths_inside_the_project_are_relative_to_the_dag_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The committed DAG must be the same on every machine: no absolute checkout paths."""
    dag = tmp_path / "airflow_compat" / "dags" / "millpond.py"
    venv_bin = str(tmp_path / ".venv" / "bin" / "millpond")
    source = render_dag(graph(), MillpondConfig(), venv_bin, tmp_path / "millpond.yml", dag)
    assert str(tmp_path) not in source
    assert "'../../.venv/bin/millpond'" in source and "'../../millpond.yml'" in source
    # Overridden on the Airflow side, a relative value is relative to the DAG file, a bare
    # name is looked up on PATH.
    header = source.split("with DAG(")[0].replace("from airflow", "# from airflow")
    for env, expected in [
        ({}, f"{dag.parent}/../../.venv/bin/millpond run-node publish"),
        ({"MILLPOND_BIN": "millpond"}, "millpond run-node publish"),
        ({"MILLPOND_BIN": "/opt/mp/bin/millpond"}, "/opt/mp/bin/millpond run-node publish"),
    ]:
        namespace: dict[str, object] = {"__file__": str(dag)}
        monkeypatch.delenv("MILLPOND_BIN", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        exec(header, namespace)
        assert str(namespace["COMMAND"]).format(node="publish").startswith(expected)
    outside = render_dag(graph(), MillpondConfig(), "/opt/mp/bin/millpond", tmp_path / "m.yml")
    assert "'/opt/mp/bin/millpond'" in outside
