"""The `millpond` command's handling of configuration, as a user meets it."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import millpond

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
