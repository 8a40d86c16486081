"""The dbt profile millpond writes for its configured warehouse.

Any dbt project runs against millpond's warehouse without a profiles.yml of its own: the
profile is written under the state dir, under the name the project's dbt_project.yml asks for,
with one output (`millpond`) that the configured target describes. Secrets are never written:
the target's output refers to them with env_var(), and millpond sets those variables for dbt.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

GENERATED_TARGET = "millpond"


def profile_name(project_dir: Path) -> str:
    """The profile the project asks for (dbt_project.yml `profile:`, else its `name`)."""
    data = yaml.safe_load((project_dir / "dbt_project.yml").read_text(encoding="utf-8")) or {}
    return str(data.get("profile") or data.get("name") or "default")


def write_profile(profiles_dir: Path, name: str, output: dict[str, Any]) -> Path:
    """Write profiles.yml (only when its content changes, so dbt's partial parse survives)."""
    profiles_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(
        {name: {"target": GENERATED_TARGET, "outputs": {GENERATED_TARGET: output}}},
        sort_keys=False,
    )
    path = profiles_dir / "profiles.yml"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        # A temporary file of its own, so parallel `run-node` processes never share one.
        handle, tmp = tempfile.mkstemp(dir=profiles_dir, prefix=".profiles-", suffix=".yml")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    return path
