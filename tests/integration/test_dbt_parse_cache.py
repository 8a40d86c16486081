"""dbt parses shared between state dirs of the same dbt project (manifest_cache's machine-wide
cache): a second clone starts from the first one's parse without running dbt's parser; a
changed model, or a copy of the project elsewhere, parses for itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, write_project

from millpond.core.config_loading import load_config
from millpond.nodes.dbt.runner import DbtProject
from millpond.runtime.context import RunContext

pytestmark = pytest.mark.integration


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("MILLPOND_CACHE_DIR", str(folder))
    return folder / "dbt-parse"


def dbt_project(root: Path, dbt_dir: Path | None = None) -> DbtProject:
    """The dbt project of a new millpond project folder (its own state dir). dbt's paths are
    process-wide (DbtProject sets them in the environment): use one project at a time."""
    write_project(root, None, dbt_dir)
    ctx = RunContext(load_config(root / "millpond.yml", {}), "parse-cache")
    return DbtProject(ctx.config, ctx.target)


def ran_dbt(project: DbtProject) -> bool:
    """dbt writes its log file whenever it is invoked; a parse taken from the cache is not."""
    return (project.config.state / "dbt" / "logs" / "dbt.log").is_file()


def test_a_second_state_dir_takes_the_first_ones_parse(tmp_path: Path, cache: Path) -> None:
    first = dbt_project(tmp_path / "one")
    manifest = first.parse()
    assert ran_dbt(first)
    assert [p.name for p in cache.iterdir()] == [first.project_key()]

    second = dbt_project(tmp_path / "two")
    assert second.project_key() == first.project_key()  # the state dir's place is left out
    assert second.parse() == manifest
    assert not ran_dbt(second)
    assert second.manifest.nodes.keys() == first.manifest.nodes.keys()
    # What it took is its own from now on: a third parse finds it in its own target folder.
    shutil.rmtree(cache)
    assert second.parse() == manifest and not ran_dbt(second)


def test_a_changed_model_or_a_moved_project_parses_for_itself(tmp_path: Path, cache: Path) -> None:
    original = dbt_project(tmp_path / "one")
    original.parse()
    original_key = original.project_key()

    copy = tmp_path / "transform"
    shutil.copytree(REPO / "transform", copy, ignore=shutil.ignore_patterns("target", "logs"))
    moved = dbt_project(tmp_path / "two", copy).project_key()
    assert moved != original_key  # same files, another place

    model = copy / "models" / "marts" / "dim_part.sql"
    model.write_text(model.read_text() + "\n-- changed\n")
    changed = dbt_project(tmp_path / "three", copy)
    assert changed.project_key() != moved
    changed.parse()
    assert ran_dbt(changed)
    assert len(list(cache.iterdir())) == 2


def test_a_graph_from_a_cached_parse_does_not_import_dbt(tmp_path: Path, cache: Path) -> None:
    """A new clone's first `millpond run` or `graph` builds its graph from the cached parse's
    manifest.json; decoding dbt's own manifest (seconds) waits for the first dbt build."""
    dbt_project(tmp_path / "one").parse()
    root = tmp_path / "two"
    write_project(root, None)
    probe = (
        "import sys, json\n"
        "from millpond.core.config_loading import load_config\n"
        "from millpond.runtime.context import RunContext\n"
        f"ctx = RunContext(load_config({str(root / 'millpond.yml')!r}, {{}}), 'probe')\n"
        "nodes = [n.id for n in ctx.graph.nodes if n.kind == 'dbt']\n"
        "print(json.dumps([len(nodes), 'dbt.contracts.graph.manifest' in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=root
    )
    dbt_nodes, imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert dbt_nodes == 16 and imported is False
