"""The test harness asks the package registry before it installs Airflow into its own venv:
an unreachable registry is named in the skip reason. It runs `pip` twice (a few seconds
each), so it lives here rather than in the unit tier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import registry_problem

pytestmark = pytest.mark.integration


def test_an_unreachable_registry_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_NO_INDEX", "0")

    problem = registry_problem("apache-airflow==3.3.2")

    assert problem is not None and "pip index versions apache-airflow" in problem
