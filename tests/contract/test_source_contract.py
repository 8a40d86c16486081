"""What every registered source kind does, one suite run against each (as dlt runs one suite
against every destination): a config model with its `kind` that refuses unknown keys by name,
items read as Arrow batches, landed by the generic landing as one partition with a manifest,
and nothing landed twice. A new kind is done when it passes with a case in cases.py."""

from __future__ import annotations

import typing
from pathlib import Path

import pyarrow as pa
import pytest

from millpond.core.config import ConfigError, SourceConfigBase
from millpond.core.registry import SOURCES, TARGETS, Source, SourceItem, TableState
from millpond.ingest.lake import Lake
from millpond.ingest.landing import land_table

from .cases import SourceCase
from .stack import DAY, stack_config

pytestmark = pytest.mark.integration
NAME = "src"


def configured(case: SourceCase, root: Path) -> Source:
    """The source as a run makes it: its section validated through millpond.yml, then the
    registered kind's factory."""
    config = stack_config(root, sources={NAME: case.section})
    kind = SOURCES.get(case.section["kind"])
    return kind.create(NAME, config.sources[NAME], config)


def test_the_config_model_is_the_kind_and_refuses_unknown_keys(source_kind: str) -> None:
    model = SOURCES.get(source_kind).config_model

    assert issubclass(model, SourceConfigBase)
    assert typing.get_args(model.model_fields["kind"].annotation) == (source_kind,)
    assert model.model_config.get("extra") == "forbid"


def test_millpond_yml_validates_the_section_and_names_an_unknown_key(
    source_kind: str, source_case: SourceCase, tmp_path: Path
) -> None:
    config = stack_config(tmp_path, sources={NAME: source_case.section})
    section = config.sources[NAME]
    assert isinstance(section, SOURCES.get(source_kind).config_model)
    assert isinstance(section, SourceConfigBase)
    assert section.kind == source_kind and source_case.table in section.table_names()

    bad = {**source_case.section, "surprise_key": 1}
    with pytest.raises(ConfigError, match=rf"sources\.{NAME}\.surprise_key: not a key"):
        stack_config(tmp_path, sources={NAME: bad})


def test_items_read_as_arrow_batches_of_the_table(source_case: SourceCase, tmp_path: Path) -> None:
    source = configured(source_case, tmp_path)

    items = source.items(source_case.table, TableState())
    assert items and all(isinstance(item, SourceItem) for item in items)
    assert len({item.fingerprint for item in items}) == len(items)
    rows = 0
    for item in items:
        schema, batches = item.read()
        assert isinstance(schema, pa.Schema)
        for batch in batches:
            assert isinstance(batch, pa.RecordBatch)
            rows += batch.num_rows
    assert rows == source_case.rows
    assert isinstance(source.warnings(), list)


def test_the_generic_landing_lands_a_partition_with_its_manifest(
    source_case: SourceCase, tmp_path: Path
) -> None:
    lake = Lake.from_url(f"file://{tmp_path / 'lake'}")

    landed = land_table(lake, NAME, configured(source_case, tmp_path), source_case.table, "r1", DAY)

    assert landed.manifest is not None and landed.rows == source_case.rows
    assert landed.rejected == [] and landed.manifest.schema
    (manifest,) = lake.manifests(NAME, source_case.table)  # written last: the partition exists
    assert manifest.partition_id == landed.manifest.partition_id
    assert sum(part.rows for part in manifest.parts) == source_case.rows


def test_running_again_holds_every_row_once(source_case: SourceCase, tmp_path: Path) -> None:
    """Landed twice with nothing new (a file skipped, an incremental read from its cursor, a
    whole snapshot replacing the last), the default target's raw relation holds each row once."""
    config = stack_config(tmp_path, sources={NAME: source_case.section})
    lake = Lake.from_config(config)
    table = source_case.table
    for run_id in ("r1", "r2"):
        land_table(lake, NAME, configured(source_case, tmp_path), table, run_id, DAY)
    target = TARGETS.get(config.target_name).create(config.target_config, config)

    loaded = target.load_table(lake, NAME, table)

    assert loaded.table_rows == source_case.rows
    assert target.row_count(f"{target.raw_schema}.{NAME}__{table}") == source_case.rows
