"""The Airflow DAG file renders the same graph, parses as Python and imports no millpond."""

from __future__ import annotations

import ast
import datetime
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from millpond.airflow_compat.render import render_dag
from millpond.core.config import MillpondConfig
from millpond.core.graph import Graph, Node, topological


def graph() -> Graph:
    return Graph(
        topological(
            [
                Node("extract.erp.orders", "extract", retries=2),
                Node("extract.erp.customer", "extract", retries=2, retry_delay_seconds=7.5),
                Node("load.erp.orders", "load", ("extract.erp.orders",)),
                Node(
                    "dbt.stg_erp__orders",
                    "dbt",
                    ("extract.erp.customer", "load.erp.orders"),
                    timeout_seconds=60,
                ),
                Node("publish", "publish", ("dbt.stg_erp__orders",)),
            ]
        )
    )


class StandInOperator:
    """What the DAG file asks of Airflow's BashOperator: its arguments and its upstream tasks."""

    def __init__(self, made: dict[str, StandInOperator], task_id: str, **kwargs: Any) -> None:
        assert task_id not in made, f"task {task_id} made twice"
        self.task_id, self.kwargs, self.upstream = task_id, kwargs, set[str]()
        made[task_id] = self

    def set_upstream(self, other: StandInOperator | list[StandInOperator]) -> None:
        for task in other if isinstance(other, list) else [other]:
            self.upstream.add(task.task_id)

    def __rshift__(self, other: StandInOperator | list[StandInOperator]) -> Any:
        for task in other if isinstance(other, list) else [other]:
            task.set_upstream(self)
        return other

    def __rrshift__(self, other: StandInOperator | list[StandInOperator]) -> StandInOperator:
        self.set_upstream(other)
        return self


class StandInDAG:
    def __init__(self, made: dict[str, Any], **kwargs: Any) -> None:
        made["dag"] = kwargs

    def __enter__(self) -> StandInDAG:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def run_dag_file(
    source: str, path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], dict[str, StandInOperator]]:
    """Execute the DAG file against a stand-in Airflow (millpond does not install Airflow;
    tests/e2e/test_airflow_dag.py parses it with the real one): the DAG's arguments and the
    tasks it made, by task id, in the order made."""
    dag: dict[str, Any] = {}
    tasks: dict[str, StandInOperator] = {}
    bash = types.ModuleType("airflow.providers.standard.operators.bash")
    bash.BashOperator = lambda **kwargs: StandInOperator(tasks, **kwargs)  # type: ignore[attr-defined]
    sdk = types.ModuleType("airflow.sdk")
    sdk.DAG = lambda **kwargs: StandInDAG(dag, **kwargs)  # type: ignore[attr-defined]
    for name in ("airflow", "airflow.providers", "airflow.providers.standard"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "airflow.providers.standard.operators", types.ModuleType("o"))
    monkeypatch.setitem(sys.modules, bash.__name__, bash)
    monkeypatch.setitem(sys.modules, sdk.__name__, sdk)
    for variable in ("MILLPOND_BIN", "MILLPOND_CONFIG", "MILLPOND_POOL"):
        monkeypatch.delenv(variable, raising=False)
    exec(compile(source, str(path), "exec"), {"__file__": str(path), "__name__": "dag_file"})
    return dag["dag"], tasks


def test_dag_file_has_every_node_and_edge_and_no_millpond_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = render_dag(graph(), MillpondConfig(), "/opt/my env/bin/millpond", tmp_path / "m.yml")
    tree = ast.parse(source)
    imports = {
        alias.name if isinstance(node, ast.Import) else node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not any(str(name).startswith(("millpond", "ingest", "flows")) for name in imports)
    assert 'run-node {node} --attempt "$MILLPOND_ATTEMPT"' in source
    assert 'RUN = \' --run-id "$MILLPOND_RUN_ID" --orchestrator airflow' in source
    assert '"MILLPOND_RUN_TYPE": "{{ dag_run.run_type }}"' in source
    assert 'trigger_rule="all_done"' in source
    assert '"MILLPOND_RUN_ID": "{{ run_id }}"' in source
    # The table of nodes: one line per node, read by the loop that makes the tasks.
    assert "('dbt.stg_erp__orders', ('extract.erp.customer', 'load.erp.orders'), 0, 5.0, 60)," in (
        source
    )

    dag, tasks = run_dag_file(source, tmp_path / "dags" / "m.py", monkeypatch)
    assert dag["dag_id"] == "millpond" and dag["schedule"] == MillpondConfig().schedule
    assert (dag["max_active_runs"], dag["catchup"], dag["tags"]) == (1, False, ["millpond"])
    nodes = graph().nodes
    assert list(tasks) == ["run_start", "run_finish", *[n.id for n in nodes]]
    env = {"MILLPOND_RUN_ID": "{{ run_id }}", "MILLPOND_ATTEMPT": "{{ ti.try_number }}"}
    start, finish = tasks["run_start"], tasks["run_finish"]
    assert start.upstream == set() and start.kwargs["retries"] == 2
    assert start.kwargs["env"] == {**env, "MILLPOND_RUN_TYPE": "{{ dag_run.run_type }}"}
    assert " run-start --trigger " in start.kwargs["bash_command"]
    assert finish.upstream == {n.id for n in nodes}
    assert (finish.kwargs["trigger_rule"], finish.kwargs["retries"]) == ("all_done", 0)
    assert " run-finish --run-id " in finish.kwargs["bash_command"]
    for node in nodes:
        task = tasks[node.id].kwargs
        assert tasks[node.id].upstream == (set(node.upstream) or {"run_start"}), node.id
        assert f" run-node {node.id} --attempt " in task["bash_command"]
        assert task["bash_command"].endswith(finish.kwargs["bash_command"].split(" run-finish")[1])
        assert (task["env"], task["append_env"], task["pool"]) == (env, True, "default_pool")
        assert task["retries"] == node.retries
        assert task["retry_delay"] == datetime.timedelta(seconds=node.retry_delay_seconds)
        assert task["execution_timeout"] == datetime.timedelta(seconds=node.timeout_seconds)


def test_each_node_is_one_line_of_the_dag_file(tmp_path: Path) -> None:
    """The DAG file grows by a line per node, not a block per node (issue 24)."""
    small = render_dag(graph(), MillpondConfig(), "/opt/mp/bin/millpond", tmp_path / "m.yml")
    added = [Node(f"dbt.model_{i}", "dbt", ("publish",)) for i in range(50)]
    more = Graph((*graph().nodes, *added))
    large = render_dag(more, MillpondConfig(), "/opt/mp/bin/millpond", tmp_path / "m.yml")
    assert len(large.splitlines()) == len(small.splitlines()) + 50


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
