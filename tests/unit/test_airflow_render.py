"""The Airflow DAG file renders the same graph, parses as Python and imports no millpond."""

from __future__ import annotations

import ast
from pathlib import Path

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
    assert task_ids == [n.id for n in graph().nodes]
    edges = [
        (n.left.slice.value, n.right.slice.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.RShift)
    ]
    assert edges == graph().edges()
    assert 'run-node {node} --run-id "$MILLPOND_RUN_ID"' in source
    assert '"MILLPOND_RUN_ID": "{{ run_id }}"' in source
    assert "retries=2" in source and "execution_timeout=datetime.timedelta(seconds=60)" in source


def test_paths_with_spaces_are_quoted_for_the_shell(tmp_path: Path) -> None:
    source = render_dag(graph(), MillpondConfig(), "/opt/my env/bin/millpond", tmp_path / "m.yml")
    namespace: dict[str, object] = {}
    header = source.split("with DAG(")[0].replace("from airflow", "# from airflow")
    exec(header, namespace)
    command = str(namespace["COMMAND"]).format(node="publish")
    assert command.startswith("'/opt/my env/bin/millpond' run-node publish")
