"""Fixtures shared by the ingest tests: an empty inbox and a local lake."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.lake import Lake


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.from_url(f"file://{tmp_path / 'lake'}")
