"""A stack's millpond.yml for one contract test: a local lake, the kinds under test."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml

from millpond.core.config import MillpondConfig
from millpond.core.config_loading import load_config

DAY = dt.date(2026, 11, 28)


def stack_config(
    root: Path,
    sources: dict[str, Any] | None = None,
    warehouse: dict[str, Any] | None = None,
    dbt_project: Path | None = None,
) -> MillpondConfig:
    """Write millpond.yml in `root` and load it the way every command does."""
    data: dict[str, Any] = {"lake": {"url": f"file://{root / 'lake'}"}}
    if warehouse:
        data["warehouse"] = warehouse
    if dbt_project:
        data["dbt"] = {"project_dir": str(dbt_project)}
    data["sources"] = sources or {}
    (root / "millpond.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(root / "millpond.yml", {})
