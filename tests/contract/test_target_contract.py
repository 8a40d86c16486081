"""What every registered warehouse target does, one suite run against each (as dlt runs one
suite against every destination): a config model that refuses unknown keys by name; landed
partitions loaded once, counted and taken out again; a dbt profile output dbt builds with; a
publish its marts reader reads; and a publish repeated gives the same marts. A new target is
done when it passes with a case in cases.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from millpond.core.config import ConfigError, MillpondConfig, TargetConfigBase
from millpond.core.registry import SOURCES, TARGETS, MartsReader, Target
from millpond.ingest.lake import Lake
from millpond.ingest.landing import land_table
from millpond.nodes.dbt.runner import DbtProject

from .cases import ORDERS_CSV, TargetCase
from .stack import DAY, stack_config

pytestmark = pytest.mark.integration

DBT_PROJECT = {
    "dbt_project.yml": "name: contract\nversion: '1.0.0'\nprofile: contract\n"
    "models:\n  contract:\n    +materialized: table\n    +schema: marts\n",
    # The custom schema as it is (dbt's default would prefix the target's schema).
    "macros/schema.sql": "{% macro generate_schema_name(custom_schema_name, node) -%}\n"
    "{{ custom_schema_name or target.schema }}\n{%- endmacro %}\n",
    "models/sources.yml": "version: 2\nsources:\n  - name: erp\n    schema: raw\n"
    "    tables:\n      - name: orders\n        identifier: erp__orders\n",
    "models/orders_total.sql": "select count(*) as orders, sum(amount) as amount "
    "from {{ source('erp', 'orders') }}\n",
}


def stack(root: Path, kind: str, case: TargetCase, **extra: Any) -> MillpondConfig:
    """A stack on this target, with a files source `erp` whose inbox is `root/inbox`."""
    (root / "inbox").mkdir(exist_ok=True)
    files = {"kind": "files", "path": str(root / "inbox"), "tables": ["orders"]}
    warehouse = {"target": kind, kind: {**case.section, **extra}}
    return stack_config(root, {"erp": files}, warehouse, write_dbt_project(root / "dbt"))


def write_dbt_project(folder: Path) -> Path:
    for name, text in DBT_PROJECT.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def created(config: MillpondConfig) -> Target:
    return TARGETS.get(config.target_name).create(config.target_config, config)


def land(config: MillpondConfig, name: str, text: str, run_id: str) -> str:
    """A CSV dropped into the inbox and landed through the registered `files` kind; the
    partition's id."""
    (config.root / "inbox" / name).write_text(text)
    source = SOURCES.get("files").create("erp", config.sources["erp"], config)
    landed = land_table(Lake.from_config(config), "erp", source, "orders", run_id, DAY)
    assert landed.manifest is not None
    return landed.manifest.partition_id


def test_the_config_model_refuses_unknown_keys_by_name(
    target_kind: str, target_case: TargetCase, tmp_path: Path
) -> None:
    model = TARGETS.get(target_kind).config_model
    assert issubclass(model, TargetConfigBase)
    assert isinstance(stack(tmp_path, target_kind, target_case).target_config, model)

    with pytest.raises(ConfigError, match=rf"warehouse\.{target_kind}\.surprise_key: not a key"):
        stack(tmp_path, target_kind, target_case, surprise_key=1)


def test_partitions_load_once_count_and_leave_again(
    target_kind: str, target_case: TargetCase, tmp_path: Path
) -> None:
    config = stack(tmp_path, target_kind, target_case)
    target = created(config)
    assert target.name == target_kind
    first = land(config, "orders_1.csv", "id,amount\n1,10.5\n2,3.25\n", "r1")
    second = land(config, "orders_2.csv", "id,amount\n3,7.75\n", "r2")
    relation = f"{target.raw_schema}.erp__orders"
    lake = Lake.from_config(config)

    with target.writer_lock():
        loaded = target.load_table(lake, "erp", "orders")
    again = target.load_table(lake, "erp", "orders")

    assert loaded.relation == relation and sorted(loaded.partitions) == sorted([first, second])
    assert (loaded.rows, loaded.table_rows) == (3, 3)
    assert (again.partitions, again.rows, again.table_rows) == ([], 0, 3)  # loaded once
    assert target.row_count(relation) == 3
    assert target.loaded_partitions("erp", "orders") == {first, second}
    assert target.drop_partition("erp", "orders", first)
    assert not target.drop_partition("erp", "orders", first)  # once
    assert target.row_count(relation) == 1
    assert target.loaded_partitions("erp", "orders") == {second}
    target.release()


def read_total(reader: MartsReader) -> list[tuple[int, float]]:
    rows = reader.rows(f"select orders, amount from {reader.relation('marts', 'orders_total')}", [])
    return [(int(r["orders"]), float(r["amount"])) for r in rows]


def test_dbt_builds_with_its_profile_and_the_reader_reads_what_it_published(
    target_kind: str, target_case: TargetCase, tmp_path: Path
) -> None:
    config = stack(tmp_path, target_kind, target_case)
    kind = TARGETS.get(target_kind)
    target = created(config)
    output, env = target.dbt_output(), target.dbt_env()
    assert output["type"] and "schema" in output
    secrets = [v for v in env.values() if len(v) > 3]
    assert not any(s in yaml.safe_dump(output) for s in secrets), "a secret value in the profile"
    land(config, "orders_1.csv", ORDERS_CSV, "r1")
    with target.writer_lock():
        target.load_table(Lake.from_config(config), "erp", "orders")
    try:  # before any publish: refused (the API's 503; FileNotFoundError: "nothing
        before = kind.reader(config)  # published yet") or no marts to read
    except Exception:
        pass
    else:
        assert ("marts", "orders_total") not in before.relations()
        before.close()

    built = DbtProject(config, target).build(["orders_total"])
    target.release()
    assert built.success, built.failure_message()
    published = target.publish("r1", ["marts"], keep=2)

    # Each relation published and its rows (named as readers outside millpond find it).
    assert [(k.rsplit(".", 1)[1], n) for k, n in published.tables.items()] == [("orders_total", 1)]
    assert published.rows == 1 and published.location
    reader = kind.reader(config)
    try:
        assert [c for c, _ in reader.relations()[("marts", "orders_total")]] == ["orders", "amount"]
        assert read_total(reader) == [(3, 21.5)]
        assert reader.scalar("select 1", []) == 1
        batches = reader.batches(
            f"select orders from {reader.relation('marts', 'orders_total')}", []
        )
        assert batches.read_all().num_rows == 1
        assert isinstance(reader.bad_input, tuple)
        key = kind.published_key(config) if kind.published_key else None
    finally:
        reader.close()

    # Published again (a re-run): the same marts, and the key (if any) names the new publish.
    again = target.publish("r2", ["marts"], keep=2)
    assert again.tables == published.tables
    reader = kind.reader(config)
    try:
        assert read_total(reader) == [(3, 21.5)]
    finally:
        reader.close()
    if kind.published_key:
        assert key is not None and kind.published_key(config) not in (None, key)
