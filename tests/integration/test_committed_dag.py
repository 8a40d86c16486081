"""The DAG committed in the repo is what `millpond dag` renders now (else it is stale)."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import BIN, REPO

pytestmark = pytest.mark.integration


def test_committed_dag_is_current() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILLPOND_")}
    result = subprocess.run(
        [str(BIN / "millpond"), "dag", "--check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (
        "airflow_compat/dags/millpond.py is stale: run `just dag` and commit it\n"
        + result.stdout
        + result.stderr
    )


def test_a_stale_dag_is_reported() -> None:
    # At the same depth in the repo as the committed DAG, so only the edit differs.
    stale = REPO / ".millpond" / "test-dags" / "millpond.py"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text((REPO / "airflow_compat" / "dags" / "millpond.py").read_text() + "# edit\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILLPOND_")}
    result = subprocess.run(
        [str(BIN / "millpond"), "dag", "--check", "--output", str(stale)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1
    assert "is stale" in result.stderr
