"""The dbt profile millpond writes for its warehouse, so any dbt project runs without one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from millpond.core.config import MillpondConfig, config_model
from millpond.nodes.dbt.profile import GENERATED_TARGET, profile_name, write_profile
from millpond.nodes.dbt.runner import DbtError, DbtProject
from millpond.targets.duckdb import DuckDBTarget
from millpond.targets.postgres import PASSWORD_ENV, PostgresTarget


@pytest.fixture(autouse=True)
def own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """DbtProject sets process-wide variables for dbt; keep them inside each test."""
    monkeypatch.setattr(os, "environ", dict(os.environ))


def dbt_project(root: Path, text: str = "name: shop\nprofile: shop_profile\n") -> Path:
    folder = root / "transform"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dbt_project.yml").write_text(text)
    return folder


def stack(root: Path, **data: object) -> MillpondConfig:
    data.setdefault("dbt", {})  # the dbt project in `transform`
    return config_model()(root=root, **data)


def profiles(config: MillpondConfig) -> dict:
    return yaml.safe_load((config.dbt_profiles_dir / "profiles.yml").read_text())


def test_profile_name_is_the_projects_profile_else_its_name(tmp_path):
    assert profile_name(dbt_project(tmp_path / "a")) == "shop_profile"
    assert profile_name(dbt_project(tmp_path / "b", "name: shop\n")) == "shop"


def test_the_generated_duckdb_profile_points_at_the_warehouse_file(tmp_path):
    dbt_project(tmp_path)
    config = stack(tmp_path, warehouse={"path": "data/w.duckdb", "threads": 4})

    DbtProject(config, DuckDBTarget(config.target_config, config))

    assert config.dbt_profiles_dir == tmp_path / ".millpond" / "dbt" / "profile" / "duckdb"
    assert profiles(config) == {
        "shop_profile": {
            "target": GENERATED_TARGET,
            "outputs": {
                GENERATED_TARGET: {
                    "type": "duckdb",
                    "path": str(tmp_path / "data" / "w.duckdb"),
                    "schema": "main",
                    "threads": 4,
                }
            },
        }
    }


def test_the_generated_postgres_profile_never_holds_the_password(tmp_path):
    dbt_project(tmp_path)
    config = stack(
        tmp_path, warehouse={"target": "postgres", "url": "postgresql://app:hunter22@db:6543/dw"}
    )

    DbtProject(config, PostgresTarget(config.target_config, config))

    text = (config.dbt_profiles_dir / "profiles.yml").read_text()
    assert "hunter22" not in text
    output = profiles(config)["shop_profile"]["outputs"][GENERATED_TARGET]
    assert (output["type"], output["host"], output["port"]) == ("postgres", "db", 6543)
    assert (output["user"], output["dbname"]) == ("app", "dw")
    assert PASSWORD_ENV in output["password"]
    assert os.environ[PASSWORD_ENV] == "hunter22"  # dbt reads it from the environment


def test_dbt_runs_with_the_generated_target_and_the_configured_vars(tmp_path):
    dbt_project(tmp_path)
    config = stack(tmp_path, dbt={"vars": {"start": "2024-01-01"}})

    project = DbtProject(config, DuckDBTarget(config.target_config, config))

    args = project.common_args()
    assert args[args.index("--profiles-dir") + 1] == str(config.dbt_profiles_dir)
    assert args[args.index("--target") + 1] == GENERATED_TARGET
    assert args[args.index("--vars") + 1] == '{"start": "2024-01-01"}'


def test_a_users_own_profiles_dir_is_used_and_not_written(tmp_path):
    dbt_project(tmp_path)
    own = tmp_path / "profiles"
    own.mkdir()
    config = stack(tmp_path, dbt={"profiles_dir": "profiles", "target": "ci"})

    project = DbtProject(config, DuckDBTarget(config.target_config, config))

    assert not (own / "profiles.yml").exists()
    assert not (tmp_path / ".millpond" / "dbt" / "profile").exists()
    args = project.common_args()
    assert args[args.index("--profiles-dir") + 1] == str(own)
    assert args[args.index("--target") + 1] == "ci"


def test_an_unchanged_profile_is_not_rewritten(tmp_path):
    output = {"type": "duckdb", "path": "/w.duckdb"}
    path = write_profile(tmp_path, "shop", output)
    os.utime(path, (1_000_000, 1_000_000))

    write_profile(tmp_path, "shop", output)
    assert path.stat().st_mtime == 1_000_000

    write_profile(tmp_path, "shop", {**output, "threads": 2})
    assert path.stat().st_mtime != 1_000_000
    assert yaml.safe_load(path.read_text())["shop"]["outputs"][GENERATED_TARGET]["threads"] == 2


def test_a_folder_without_dbt_project_yml_names_the_setting(tmp_path):
    config = stack(tmp_path)

    with pytest.raises(DbtError, match=r"no dbt_project\.yml \(dbt\.project_dir"):
        DbtProject(config, DuckDBTarget(config.target_config, config))
