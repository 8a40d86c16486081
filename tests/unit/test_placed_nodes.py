"""Python and command nodes placed by `after:`/`before:` (millpond.nodes.placed): where they go
in the graph, and the errors naming the millpond.yml key when they cannot go anywhere."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from millpond.core.config import ConfigError, MillpondConfig
from millpond.core.config_loading import load_config
from millpond.core.graph import Graph, Node, topological, with_before_edges
from millpond.core.masking import MASK, mask
from millpond.core.registry import NODE_KINDS
from millpond.nodes.command import CommandFailed
from millpond.nodes.placed import PlacedConfigError
from millpond.nodes.python import PythonNodeError

OTHERS = [
    Node("extract.shop.orders", "extract"),
    Node("load.shop.orders", "load", ("extract.shop.orders",)),
    Node("dbt.country_codes", "dbt"),
    Node("dbt.stg_shop__orders", "dbt", ("load.shop.orders",)),
    Node("dbt.orders_by_country", "dbt", ("dbt.stg_shop__orders", "dbt.country_codes")),
    Node("publish", "publish", ("dbt.orders_by_country",)),
]


def project(tmp_path: Path, nodes: str, env: dict[str, str] | None = None) -> MillpondConfig:
    # A module name of its own per test: the project folder goes on sys.path.
    (tmp_path / f"mod_{tmp_path.name}.py").write_text("def run(context):\n    return 3\n")
    (tmp_path / "millpond.yml").write_text(f"sources: {{}}\nnodes:\n{nodes}")
    return load_config(tmp_path / "millpond.yml", env or {})


def graph(config: MillpondConfig) -> Graph:
    """What build_graph makes of OTHERS and the placed kinds (no dbt parse needed)."""
    scope = SimpleNamespace(config=config)
    nodes = list(OTHERS)
    for name in ("python", "command"):
        nodes += NODE_KINDS.get(name).build(scope, list(nodes))  # type: ignore[arg-type]
    return Graph(topological(with_before_edges(nodes)))


def test_nodes_go_between_load_and_dbt_and_after_publish(tmp_path: Path) -> None:
    mod = f"mod_{tmp_path.name}:run"
    config = project(
        tmp_path,
        f"  check: {{kind: python, callable: '{mod}', after: load.shop.orders, before: [dbt]}}\n"
        "  job: {kind: command, run: 'true', after: [check], before: [dbt.stg_*], retries: 2,"
        " retry_delay: 1.5, timeout: 60}\n"
        f"  export: {{kind: python, callable: '{mod}', after: [publish]}}\n"
        "  alone: {kind: command, run: 'true'}\n",
    )
    g = graph(config)
    up = {n.id: set(n.upstream) for n in g.nodes}
    assert up["python.check"] == {"load.shop.orders"}
    assert up["command.job"] == {"python.check"}
    # `before: [dbt]` is every dbt node, the seed included; the glob only the staging model.
    assert up["dbt.country_codes"] == {"python.check"}
    assert up["dbt.stg_shop__orders"] == {"load.shop.orders", "python.check", "command.job"}
    # Publish waits for every placed node not after it; the export runs after it.
    assert up["publish"] == {
        "dbt.orders_by_country",
        "python.check",
        "command.job",
        "command.alone",
    }
    assert up["python.export"] == {"publish"}
    assert [n.id for n in g.nodes].index("python.export") == len(g.nodes) - 1
    job = g.node("command.job")
    assert (job.kind, job.retries, job.retry_delay_seconds, job.timeout_seconds) == (
        "command",
        2,
        1.5,
        60,
    )
    assert re.search(r"^python\.check +\[python\]  after: load\.shop\.orders$", g.to_text(), re.M)


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        (
            "  a: {kind: command, run: 'true', after: [load.shop.ordrs]}\n",
            "nodes.a.after: 'load.shop.ordrs' names no node",
        ),
        (
            "  a: {kind: command, run: 'true', before: [nope]}\n",
            "nodes.a.before: 'nope' names no node",
        ),
        (
            "  a: {kind: command, run: 'true', after: [publish], before: [dbt]}\n",
            "nodes.a: `after`/`before` make a cycle",
        ),
        (
            "  a: {kind: command, run: 'true', after: [b]}\n"
            "  b: {kind: command, run: 'true', after: [a]}\n",
            "nodes.a and nodes.b: `after`/`before` make a cycle",
        ),
        (
            "  a: {kind: python, callable: 'etl.no_such_module:run'}\n",
            "nodes.a.callable: cannot import module 'etl.no_such_module'",
        ),
        (
            "  a: {kind: python, callable: 'mod_{name}:nope'}\n",
            "nodes.a.callable: module 'mod_{name}'",
        ),
    ],
)
def test_a_node_that_cannot_be_placed_is_an_error_naming_its_key(
    tmp_path: Path, nodes: str, expected: str
) -> None:
    config = project(tmp_path, nodes.replace("{name}", tmp_path.name))
    with pytest.raises(PlacedConfigError) as info:
        graph(config)
    assert expected.replace("{name}", tmp_path.name) in str(info.value)
    assert str(info.value).startswith("millpond.yml nodes.")


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        ("  a: {kind: python, callable: 'etl.mod'}\n", "nodes.a.callable"),
        ("  a: {kind: command, run: 'spark {nope}'}\n", "unknown placeholder {nope}"),
        ("  a: {kind: command, run: 'echo \"unclosed'}\n", "nodes.a.run"),
        ("  a: {kind: command, run: 'true', timeot: 3}\n", "did you mean nodes.a.timeout"),
        ("  a: {kind: spark, run: 'true'}\n", "nodes.a"),
        ("  Bad-Name: {kind: command, run: 'true'}\n", "node name 'Bad-Name'"),
    ],
)
def test_a_bad_node_setting_is_refused_at_config_load(
    tmp_path: Path, nodes: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        project(tmp_path, nodes)
    assert expected in str(info.value)


def test_env_values_read_from_variables_are_secrets(tmp_path: Path) -> None:
    config = project(
        tmp_path,
        "  a: {kind: command, run: 'true', env: {PLAIN: literal-value, CONN: '${ERP_CONN}'}}\n",
        {"ERP_CONN": "dsn-with-k3y-77ab"},
    )
    assert "dsn-with-k3y-77ab" in config.secrets()
    assert "literal-value" not in config.secrets()
    assert config.masked()["nodes"]["a"]["env"] == {"PLAIN": "literal-value", "CONN": MASK}


def command_scope(tmp_path: Path, run: str, timeout: float) -> tuple[Any, Node, Any]:
    config = project(tmp_path, f"  slow: {{kind: command, run: {run!r}, timeout: {timeout}}}\n")
    g = graph(config)
    scope = SimpleNamespace(config=config, run_id="r-1")
    report = SimpleNamespace(status="running", attempt=1, rows=None, bytes=None, detail={})
    return scope, g.node("command.slow"), report


def test_a_timeout_kills_the_commands_whole_process_group(tmp_path: Path) -> None:
    child = tmp_path / "child.pid"
    script = tmp_path / "slow.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        f"open({str(child)!r}, 'w').write(str(p.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(300)\n"
    )
    scope, node, report = command_scope(tmp_path, f"{{python}} {script}", 3)
    with pytest.raises(CommandFailed) as info:
        NODE_KINDS.get("command").run(scope, node, report)
    assert "did not finish within its timeout (3 s, nodes.slow.timeout)" in str(info.value)
    pid = int(child.read_text())
    deadline = time.monotonic() + 30
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(pid), "the command's child survived its timeout"


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_failing_command_fails_with_its_stderr_tail_masked(tmp_path: Path) -> None:
    secret = "tok-9f8e7d6c5b"
    code = (
        "import os, sys\n"
        "for i in range(30): print(f'line {i}', file=sys.stderr)\n"
        "print('token', os.environ['CONN'], file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    (tmp_path / "fail.py").write_text(code)
    config = project(
        tmp_path,
        "  slow: {kind: command, run: '{python} fail.py', env: {CONN: '${NODE_CONN}'}}\n",
        {"NODE_CONN": secret},
    )
    g = graph(config)
    scope = SimpleNamespace(config=config, run_id="r-1")
    report = SimpleNamespace(status="running", attempt=1, rows=None, bytes=None, detail={})
    with pytest.raises(CommandFailed) as info:
        NODE_KINDS.get("command").run(scope, g.node("command.slow"), report)
    message = str(info.value)
    assert f"{sys.executable} exited with 3" in message
    assert "line 29" in message and "line 10" not in message  # the last 20 lines
    assert secret not in message and f"token {MASK}" in message
    assert mask(secret) == MASK  # the node registered it for every log record


PYTHON_MODULE = """\
import time


def rows(context):
    context.log.info(f"run {context.run_id} node {context.node_id} attempt {context.attempt}")
    return {"rows": 7, "bytes": 70, "file": "out.csv"}


def count(context):
    return 4


def slow(context):
    time.sleep(30)


def wrong(context):
    return "seven"


def broken(context):
    raise KeyError("customer_id")
"""


def python_node(tmp_path: Path, function: str, timeout: float = 60) -> tuple[Any, Any]:
    tmp_path.mkdir(exist_ok=True)
    module = f"fns_{tmp_path.parent.name}_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text(PYTHON_MODULE)
    config = project(
        tmp_path,
        f"  step: {{kind: python, callable: '{module}:{function}', timeout: {timeout}}}\n",
    )
    scope = SimpleNamespace(config=config, run_id="r-7")
    report = SimpleNamespace(status="running", attempt=2, rows=None, bytes=None, detail={})
    NODE_KINDS.get("python").run(scope, graph(config).node("python.step"), report)  # type: ignore[arg-type]
    return report, config


def test_a_python_node_reports_what_its_function_returns(tmp_path: Path) -> None:
    report, _ = python_node(tmp_path / "a", "rows")
    assert (report.rows, report.bytes, report.detail) == (7, 70, {"file": "out.csv"})
    report, _ = python_node(tmp_path / "b", "count")
    assert (report.rows, report.bytes) == (4, None)


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("slow", "did not return within its timeout (1 s, nodes.step.timeout)"),
        ("wrong", "returned a str; return nothing, a row count, or a mapping"),
        ("broken", "raised KeyError: 'customer_id'"),
    ],
)
def test_a_python_node_fails_saying_why(tmp_path: Path, function: str, expected: str) -> None:
    with pytest.raises(PythonNodeError) as info:
        python_node(tmp_path / function, function, timeout=1)
    assert expected in str(info.value)
