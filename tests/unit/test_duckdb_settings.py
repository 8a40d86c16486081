"""`warehouse.memory_limit` / `duckdb_threads`: every warehouse connection and dbt get them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from millpond.core.config import ConfigError, config_model
from millpond.core.config_loading import load_config
from millpond.targets.duckdb import DuckDBConfig, DuckDBTarget
from millpond.targets.duckdb.lock import open_warehouse


def _target(tmp_path: Path, **settings: object) -> DuckDBTarget:
    stack = config_model()(root=tmp_path, warehouse={"target": "duckdb", "path": "w.duckdb"})
    return DuckDBTarget(DuckDBConfig(path=Path("w.duckdb"), **settings), stack)


def _setting(con, name: str) -> str:
    return str(con.execute(f"select current_setting('{name}')").fetchone()[0])


def test_the_warehouse_connections_and_the_dbt_profile_get_the_limits(tmp_path):
    target = _target(tmp_path, memory_limit="256MB", duckdb_threads=2)

    with open_warehouse(target.path, target._setup) as con:
        # DuckDB reports the limit in its own units (256MB is 244.1 MiB).
        assert _setting(con, "memory_limit") == "244.1 MiB"
        assert _setting(con, "threads") == "2"
    output = target.dbt_output()
    assert output["settings"] == {"memory_limit": "256MB", "threads": 2}
    assert output["threads"] == 1  # dbt's own threads stay what warehouse.threads says


def test_publish_copies_the_marts_under_the_limit(tmp_path):
    target = _target(tmp_path, memory_limit="64MB")
    with open_warehouse(target.path) as con:
        con.execute("create schema marts")
        con.execute("create table marts.big as select range as id from range(2000000)")

    done = target.publish("r1", ["marts"], keep=2)

    assert done.tables == {"marts.big": 2000000}


def test_without_limits_the_profile_is_what_it_was(tmp_path):
    output = _target(tmp_path).dbt_output()

    assert "settings" not in output
    with open_warehouse(tmp_path / "w.duckdb") as con:
        assert _setting(con, "threads") != "0"


def test_a_limit_from_millpond_yml_and_a_bad_one(tmp_path):
    config = {"warehouse": {"target": "duckdb", "memory_limit": "1GB", "duckdb_threads": 1}}
    (tmp_path / "millpond.yml").write_text(yaml.safe_dump(config))
    assert load_config(tmp_path / "millpond.yml").target_config.settings() == {
        "memory_limit": "1GB",
        "threads": 1,
    }

    config["warehouse"]["memory_limit"] = "lots"
    (tmp_path / "millpond.yml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="memory_limit") as error:
        load_config(tmp_path / "millpond.yml")
    assert "512MB" in str(error.value)


def test_memory_limit_and_threads_do_not_change_what_a_model_fingerprint_covers(
    tmp_path: Path,
) -> None:
    """A run with another memory limit rebuilds nothing (the bench's memory case at scale 1
    made the next nothing-new run rebuild every model)."""
    from millpond.nodes.dbt import what_a_build_reads

    plain = what_a_build_reads(_target(tmp_path).dbt_output())
    limited = _target(tmp_path, memory_limit="256MB", duckdb_threads=2, threads=4)
    assert limited.dbt_output()["settings"] == {"memory_limit": "256MB", "threads": 2}
    assert what_a_build_reads(limited.dbt_output()) == plain
    assert plain["type"] == "duckdb" and plain["path"].endswith("w.duckdb")
