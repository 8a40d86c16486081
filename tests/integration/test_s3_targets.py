"""Every registered warehouse target over an S3 lake (moto over HTTP): DuckDB's raw views read
s3:// Parquet through httpfs with a temporary secret, PostgreSQL COPYs partitions from S3; a
partition taken back leaves the raw relation. The targets come from the registry, each with its
contract case (tests/contract/cases.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import S3_KEY_ID, S3_SECRET
from contract.kinds import target_case

from millpond.core.config_loading import load_config
from millpond.core.registry import TARGETS
from millpond.ingest.lake import Lake
from millpond.ingest.landing import land_table
from millpond.ingest.sources.files import FilesSource
from millpond.ingest.sources.files.config import FilesSourceConfig

DAY = dt.date(2024, 3, 1)


def stack(tmp_path: Path, endpoint: str, bucket: str, target: str, section: dict) -> object:
    warehouse = yaml.safe_dump({"warehouse": {"target": target, target: section}})
    (tmp_path / "millpond.yml").write_text(
        f"""
lake:
  url: s3://{bucket}/lake
  endpoint_url: ${{S3_ENDPOINT}}
  access_key_id: ${{S3_KEY_ID}}
  secret_access_key: ${{S3_SECRET}}
{warehouse}
sources:
  erp: {{kind: files, path: inbox, tables: [orders]}}
"""
    )
    env = {"S3_ENDPOINT": endpoint, "S3_KEY_ID": S3_KEY_ID, "S3_SECRET": S3_SECRET}
    return load_config(tmp_path / "millpond.yml", env)


def land(lake: Lake, tmp_path: Path, name: str, text: str, run_id: str) -> object:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    (inbox / name).write_text(text)
    config = FilesSourceConfig(kind="files", path=str(inbox), tables=["orders"])
    result = land_table(lake, "erp", FilesSource("erp", config, inbox), "orders", run_id, DAY)
    return result.manifest


@pytest.fixture(params=TARGETS.names())
def target(request, tmp_path) -> Iterator[tuple[str, dict]]:
    """Each registered target, with the warehouse section of its contract case."""
    with target_case(request.param, request, tmp_path) as case:
        yield request.param, case.section


def test_a_target_loads_and_drops_partitions_of_an_s3_lake(target, tmp_path, s3_server, s3_bucket):
    target_name, section = target
    config = stack(tmp_path, s3_server, s3_bucket, target_name, section)
    lake = Lake.from_config(config)
    target = TARGETS.get(target_name).create(config.target_config, config)
    assert S3_SECRET not in yaml.safe_dump(target.dbt_output())  # env_var() references only
    first = land(lake, tmp_path, "orders_1.csv", "id,amount\n1,10.5\n2,3.25\n", "r1")
    second = land(lake, tmp_path, "orders_2.csv", "id,amount\n3,7.75\n", "r2")

    loaded = target.load_table(lake, "erp", "orders")

    assert loaded.rows == 3 and target.row_count("raw.erp__orders") == 3
    assert target.loaded_partitions("erp", "orders") == {first.partition_id, second.partition_id}
    assert target.drop_partition("erp", "orders", first.partition_id)
    assert not target.drop_partition("erp", "orders", first.partition_id)  # once
    assert target.row_count("raw.erp__orders") == 1
    assert target.loaded_partitions("erp", "orders") == {second.partition_id}


def test_the_duckdb_profile_for_an_s3_lake_holds_no_secret_value(tmp_path, s3_server, s3_bucket):
    config = stack(tmp_path, s3_server, s3_bucket, "duckdb", {})
    target = TARGETS.get("duckdb").create(config.target_config, config)

    output = target.dbt_output()
    text = yaml.safe_dump(output)

    assert S3_SECRET not in text and S3_KEY_ID not in text
    (secret,) = output["secrets"]
    assert secret["secret"] == "{{ env_var('MILLPOND_LAKE_S3_SECRET') }}"
    assert secret["url_style"] == "path" and secret["scope"] == f"s3://{s3_bucket}"
    assert target.dbt_env()["MILLPOND_LAKE_S3_SECRET"] == S3_SECRET
    # The warehouse file keeps no secret either (temporary secrets live in memory only).
    lake = Lake.from_config(config)
    land(lake, tmp_path, "orders_1.csv", "id,amount\n1,10.5\n", "r1")
    target.load_table(lake, "erp", "orders")
    assert S3_SECRET.encode() not in target.path.read_bytes()
