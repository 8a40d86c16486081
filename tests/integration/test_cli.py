"""The `millpond` command's handling of configuration, as a user meets it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from conftest import BIN, free_port, millpond

pytestmark = pytest.mark.integration


def test_bad_config_names_the_key_and_exits_2(project: Path) -> None:
    config = project / "millpond.yml"
    config.write_text(config.read_text().replace("concurrency: 4", "concurrency: many"))
    result = millpond(project, "graph")
    assert result.returncode == 2
    assert "prefect.concurrency" in result.stderr and "'many'" in result.stderr


def test_config_masks_secrets_that_came_from_the_environment(project: Path) -> None:
    config = project / "millpond.yml"
    text = config.read_text().replace(
        "dbt:\n", "dbt:\n  vars: {auth_header: '${API_TOKEN}', plain: '${PLAIN_VALUE}'}\n", 1
    )
    config.write_text(text)
    env = {"API_TOKEN": "tok-very-secret", "PLAIN_VALUE": "visible-value"}
    result = millpond(project, "config", env=env)
    assert result.returncode == 0, result.stderr
    assert "tok-very-secret" not in result.stdout
    assert "visible-value" in result.stdout
    assert "metadata:" in result.stdout


def test_ui_starts_a_local_prefect_server_once_and_down_stops_it(project: Path) -> None:
    port = str(free_port())
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["MILLPOND_PREFECT__PORT"] = port
    command = [str(BIN / "millpond")]
    first = subprocess.run([*command, "ui"], cwd=project, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert f"http://127.0.0.1:{port}" in first.stdout
    assert httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200
    pid = (project / ".millpond" / "prefect" / "server.pid").read_text()

    again = subprocess.run([*command, "ui"], cwd=project, env=env, capture_output=True, text=True)
    assert again.returncode == 0
    assert (project / ".millpond" / "prefect" / "server.pid").read_text() == pid  # reused

    down = subprocess.run([*command, "down"], cwd=project, env=env, capture_output=True, text=True)
    assert "Prefect server: stopped" in down.stdout
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)


@pytest.mark.parametrize(("text", "says"), [("", "is empty"), ("# nothing yet\n{}\n", "no keys")])
def test_an_empty_or_keyless_config_is_refused_before_anything_runs(
    tmp_path: Path, text: str, says: str
) -> None:
    (tmp_path / "millpond.yml").write_text(text)
    result = millpond(tmp_path, "run")
    assert result.returncode == 2
    assert "millpond.yml" in result.stderr and says in result.stderr
    assert not (tmp_path / ".millpond").exists()  # nothing started, landed or published


def test_an_unknown_override_is_refused_with_the_nearest_key(project: Path) -> None:
    result = millpond(project, "graph", env={"MILLPOND_LAKE__ENDPOINT": "http://127.0.0.1:9"})
    assert result.returncode == 2
    assert (
        "MILLPOND_LAKE__ENDPOINT: 'endpoint' is not a key of lake; did you mean "
        "MILLPOND_LAKE__ENDPOINT_URL?" in result.stderr
    )


def test_every_command_has_help_with_an_example(project: Path) -> None:
    for command in ["run", "graph", "status", "logs", "docs", "check-freshness"]:
        result = millpond(project, command, "--help", env={"COLUMNS": "200"})
        assert result.returncode == 0, result.stderr
        assert "Example" in result.stdout, command
    run_help = millpond(project, "run", "--help", env={"COLUMNS": "200"}).stdout
    assert "--select" in run_help and "--exclude" in run_help and "--full-refresh" in run_help
