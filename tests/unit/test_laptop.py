"""What a user on a laptop meets: commands that need only part of the config, output into a
pipe, dbt sources no table loads, and the test session's own guards (the user's MILLPOND_*
variables, processes left running; an unreachable package registry: tests/integration/
test_registry_probe.py)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import _marked_processes, clear_user_env
from rich.console import Console
from typer.testing import CliRunner

from millpond.cli.common import PIPE_WIDTH
from millpond.cli.main import app
from millpond.cli.status import _nodes_table
from millpond.cli.summary import RunFigures, print_summary
from millpond.core.config_loading import (
    config_model,
    load_config_lenient,
    missing_for,
    single_underscore_keys,
)
from millpond.core.graph import Graph, Node
from millpond.nodes.source_table import SourceTable
from millpond.runtime.wiring import check_wiring, warn_about_wiring

SECRET_SOURCES = """\
project: demo
metadata: {url: '${LEDGER_URL:-embedded}'}
sources:
  erp: {kind: files, path: inbox/erp, tables: [orders]}
  crm:
    kind: rest
    url: '${CRM_URL}'
    auth: {type: bearer, token: '${CRM_TOKEN}'}
    tables: {customers: {path: /customers}}
notify: [{webhook: '${HOOK_URL}'}]
"""


def project(tmp_path: Path, text: str = SECRET_SOURCES) -> Path:
    (tmp_path / "millpond.yml").write_text(text)
    return tmp_path / "millpond.yml"


# --- commands that need only part of the config ---------------------------------------------


def test_a_lenient_load_drops_what_unset_variables_broke_and_says_which(tmp_path: Path) -> None:
    config, unset = load_config_lenient(project(tmp_path), {})

    assert unset == {
        "sources.crm.url": "CRM_URL",
        "sources.crm.auth.token": "CRM_TOKEN",
        "notify.0.webhook": "HOOK_URL",
    }
    assert list(config.sources) == ["erp"]  # the REST source cannot do without its URL
    assert config.metadata.url == "embedded"
    assert missing_for(unset, ("state_dir", "metadata"), "millpond status") is None
    problem = missing_for(unset, ("sources",), "millpond run")
    assert problem and "sources.crm" in problem and "${CRM_" in problem


def test_a_lenient_load_still_refuses_a_misspelt_key(tmp_path: Path) -> None:
    from millpond.core.config import ConfigError

    with pytest.raises(ConfigError, match="did you mean project"):
        load_config_lenient(project(tmp_path, SECRET_SOURCES + "projekt: x\n"), {})


@pytest.mark.parametrize("command", [["down"], ["logs", "last"]])
def test_down_and_logs_work_without_the_sources_secrets(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(tmp_path)
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(app, command)

    assert "config error" not in result.output, result.output
    if command == ["down"]:
        assert result.exit_code == 0 and "embedded PostgreSQL: not running" in result.output
    else:  # it got past the config: there is simply no log yet
        assert result.exit_code == 2 and "no run logs" in result.output
    assert not (tmp_path / ".millpond").exists()


def test_status_needs_the_ledger_url_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(tmp_path, SECRET_SOURCES.replace("${LEDGER_URL:-embedded}", "${LEDGER_URL}"))
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(app, ["status"])

    assert result.exit_code == 2
    assert "millpond status needs metadata.url, which reads ${LEDGER_URL}" in result.output


def test_key_paths_spelt_with_one_underscore() -> None:
    assert single_underscore_keys("prefect_port") == [["prefect", "port"]]
    assert single_underscore_keys("lake_endpoint_url") == [["lake", "endpoint_url"]]
    assert single_underscore_keys("sources_erp_path") == [["sources", "erp", "path"]]
    # a team's own names and settings other tools read spell no key path
    for name in ("api_keys", "cache_dir", "project_owner", "lake_s3_secret", "test_shared"):
        assert single_underscore_keys(name) == [], name


@pytest.mark.parametrize(
    "name",
    [
        "API_KEYS",
        "CACHE_DIR",
        "POOL",
        "RUN_TYPE",
        "MAX_LIMIT",
        "PG_HOST",
        "AIRFLOW_CACHE",
        "WAREHOUSE_PATH",
        "WAREHOUSE_PASSWORD",
        "LAKE_S3_SECRET",
        "LAKE_S3_KEY_ID",
        "TEST_PG",
        "SERVE_ROUTERS_EXTRA",
        "PROJECT_OWNER",
    ],
)
def test_settings_and_team_variables_are_not_taken_for_typos(name: str, tmp_path: Path) -> None:
    config, _ = load_config_lenient(project(tmp_path), {f"MILLPOND_{name}": "x"})

    assert config.project == "demo"


# --- output into a pipe or a file -----------------------------------------------------------


def pipe() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, soft_wrap=True, force_terminal=False), buffer


def test_status_of_a_node_with_a_long_error_stays_readable_in_a_pipe() -> None:
    console, buffer = pipe()
    node_id = "load.a_source_with_a_long_name.a_table_with_a_long_name_too"
    error = "Binder Error: " + " ".join(f"column_{i} does not exist" for i in range(60))
    run = {"run_id": "20261204T120000Z-abcdef"}
    node = {
        "node_id": node_id,
        "kind": "load",
        "status": "failed",
        "attempt": 1,
        "rows": None,
        "duration_ms": 12,
        "error": error,
    }

    from millpond.cli.common import print_table

    print_table(console, _nodes_table(run, [node]))

    lines = buffer.getvalue().splitlines()
    assert max(len(line) for line in lines) <= PIPE_WIDTH
    assert any(node_id in line for line in lines)  # the id whole, never cut or folded
    assert "column_59" in buffer.getvalue()  # the error whole, wrapped
    assert "\x1b[" not in buffer.getvalue()


def test_the_summary_wraps_errors_and_shows_wiring_warnings_in_a_pipe() -> None:
    console, buffer = pipe()
    failed = SimpleNamespace(
        node_id="dbt.fct_orders",
        status="failed",
        attempt=1,
        rows=None,
        bytes=None,
        duration_ms=5,
        detail={},
        error="dbt said " + "something long " * 40 + "\n  LINE 3: select x\n                ^",
    )
    warning = "dbt source erp.orders (raw.erp__orders) is loaded by no table of millpond.yml"

    print_summary(
        console,
        RunFigures("r1", "failed", 1.0, 0, [failed], ["dbt.fct_orders"], warnings=[warning]),
    )

    text = buffer.getvalue()
    assert max(len(line) for line in text.splitlines()) <= PIPE_WIDTH
    assert "warning: dbt source erp.orders" in text
    assert "\n  LINE 3: select x\n                ^" in text  # its own lines kept


# --- dbt sources and tables that do not meet ------------------------------------------------


def wired_graph(tables: list[str]) -> Graph:
    loads = [
        Node(
            f"load.erp.{t}",
            "load",
            params=SourceTable("erp", t),
            provides=(f"source:erp.{t}", f"relation:raw.erp__{t}"),
        )
        for t in tables
    ]
    reads = tuple(f"load.erp.{t}" for t in tables if t not in ("orderz", "big_orders"))
    return Graph([*loads, Node("dbt.stg_orders", "dbt", reads)])


def manifest(*tables: str) -> dict:
    sources = {
        f"source.p.erp.{t}": {
            "source_name": "erp",
            "name": t,
            "schema": "raw",
            "identifier": f"erp__{t}",
        }
        for t in tables
    }
    model = {"name": "stg_orders", "resource_type": "model", "depends_on": {"nodes": list(sources)}}
    return {"sources": sources, "nodes": {"model.p.stg_orders": model}}


def test_a_misspelt_table_is_named_from_both_sides() -> None:
    config = config_model().model_validate(
        {"sources": {"erp": {"kind": "files", "path": "inbox", "tables": ["customer", "orderz"]}}}
    )

    found = check_wiring(
        wired_graph(["customer", "orderz"]), manifest("customer", "orders"), config
    )

    assert len(found.unloaded) == 1 and "dbt source erp.orders" in found.unloaded[0]
    assert "add 'orders' to sources.erp.tables" in found.unloaded[0]
    assert "stg_orders" in found.unloaded[0]
    assert len(found.unread) == 1 and "table erp.orderz" in found.unread[0]
    assert "did you mean 'orders'?" in found.unread[0]


def test_tables_and_dbt_sources_that_meet_say_nothing_and_a_land_only_table_is_fine() -> None:
    config = config_model().model_validate(
        {"sources": {"erp": {"kind": "files", "path": "inbox", "tables": ["orders", "big_orders"]}}}
    )

    found = check_wiring(wired_graph(["orders", "big_orders"]), manifest("orders"), config)

    assert found.messages() == []


# --- the test session's own guards ----------------------------------------------------------


def test_the_users_millpond_variables_are_cleared_but_not_the_tests_controls() -> None:
    environ = {
        "MILLPOND_PREFECT__PORT": "4999",
        "MILLPOND_METADATA__URL": "postgresql://x@127.0.0.1:1/x",
        "MILLPOND_TEST_PG": "postgresql://y",
        "MILLPOND_REQUIRE_SERVERS": "1",
        "PATH": "/bin",
    }

    cleared = clear_user_env(environ)

    assert sorted(cleared) == ["MILLPOND_METADATA__URL", "MILLPOND_PREFECT__PORT"]
    assert set(environ) == {"MILLPOND_TEST_PG", "MILLPOND_REQUIRE_SERVERS", "PATH"}


def test_this_session_runs_without_the_users_millpond_variables() -> None:
    allowed = {"MILLPOND_REQUIRE_SERVERS", "MILLPOND_AIRFLOW_CACHE", "MILLPOND_CACHE_DIR"}
    leftover = [
        n for n in os.environ if n.startswith("MILLPOND_") and not n.startswith("MILLPOND_TEST_")
    ]
    assert set(leftover) <= allowed


def test_a_process_carrying_the_session_mark_is_found() -> None:
    mark = uuid.uuid4().hex
    env = {**os.environ, "MILLPOND_TEST_SESSION": mark}
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env=env, start_new_session=True
    )
    try:
        # Until the child has exec'd, /proc shows the parent's environment, without the mark.
        deadline = time.monotonic() + 10
        while not (found := _marked_processes(mark)) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()

    assert [pid for pid, _ in found] == [child.pid]
    assert _marked_processes(mark) == []


def test_under_on_unloaded_source_error_the_run_is_refused_naming_the_setting() -> None:
    def config_with(mode: str) -> object:
        return config_model().model_validate(
            {
                "dbt": {"on_unloaded_source": mode},
                "sources": {"erp": {"kind": "files", "path": "inbox", "tables": ["customer"]}},
            }
        )

    dbt = SimpleNamespace(manifest_json=manifest("customer", "orders"))
    graph = wired_graph(["customer"])

    def ctx(mode: str) -> SimpleNamespace:
        return SimpleNamespace(config=config_with(mode), resource=lambda key, factory: dbt)

    with pytest.raises(ValueError, match=r"dbt source erp.orders .*dbt.on_unloaded_source: error"):
        warn_about_wiring(ctx("error"), graph)
    warned = warn_about_wiring(ctx("warn"), graph)
    assert len(warned) == 1 and "add 'orders' to sources.erp.tables" in warned[0]
