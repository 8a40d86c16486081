"""The fault tests' tiny project (five order rows, the acme dbt project), stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import millpond

from faults.harness import tiny_project


@pytest.fixture
def acme(tmp_path: Path) -> Iterator[Path]:
    root = tiny_project(tmp_path / "acme")
    yield root
    millpond(root, "down")
