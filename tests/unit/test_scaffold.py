"""`millpond init`: what a new project gets, what it refuses, and a dbt project adopted."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO, millpond

from millpond.core.config import ConfigError
from millpond.core.config_loading import load_config
from millpond.scaffold import ScaffoldError, project_name, scaffold

ACME = REPO / "tests" / "fixtures" / "acme_dbt"


def test_a_new_project_has_the_card_layout_and_a_config_that_loads(tmp_path: Path) -> None:
    written = scaffold(tmp_path, "Shop Data")
    for expected in (
        "millpond.yml", "justfile", "README.md", ".gitignore", ".pre-commit-config.yaml",
        "inbox/shop/orders.csv", "notebooks/explore.ipynb", "serve/routes.py",
        "tests/test_marts.py", "transform/dbt_project.yml",
        "transform/models/staging/shop/stg_shop__orders.sql",
        "transform/models/marts/fct_daily_sales.sql",
    ):  # fmt: skip
        assert expected in written and (tmp_path / expected).is_file()
    config = load_config(tmp_path / "millpond.yml", {})
    assert config.project == "shop_data" and list(config.sources) == ["shop"]
    assert config.serve.routers == ["serve.routes:router"]
    dbt_project = yaml.safe_load((tmp_path / "transform" / "dbt_project.yml").read_text())
    assert dbt_project["name"] == dbt_project["profile"] == "shop_data"
    hooks = yaml.safe_load((tmp_path / ".pre-commit-config.yaml").read_text())
    entries = [hook["entry"] for repo in hooks["repos"] for hook in repo["hooks"]]
    assert "ruff format" in entries and "millpond dag --check" in entries
    assert "__PROJECT__" not in "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())


def test_every_source_kind_has_a_commented_example_that_loads(tmp_path: Path) -> None:
    """Uncommenting the examples gives a config that loads (with their variables set)."""
    scaffold(tmp_path, "shop")
    config_file = tmp_path / "millpond.yml"
    lines = config_file.read_text().splitlines()
    start = lines.index(
        "  # A database (PostgreSQL or MariaDB/MySQL), read in chunks; incremental by a column:"
    )
    # "  # billing:" and "  #   kind: sql" are examples; "  # A database ..." is prose
    examples = [re.sub(r"^  # (\s*[a-z_]+:.*)$", r"  \1", line) for line in lines[start:]]
    config_file.write_text("\n".join(lines[:start] + examples) + "\n")
    env = {
        "BILLING_URL": "postgresql://u@h/db", "ERP_HOST": "h", "ERP_USER": "u",
        "ERP_PASSWORD": "p", "CRM_URL": "https://api.example.com", "CRM_TOKEN": "t",
    }  # fmt: skip
    config = load_config(config_file, env)
    kinds = {name: source.kind for name, source in config.sources.items()}
    assert kinds == {"shop": "files", "billing": "sql", "erp": "odbc", "crm": "rest"}


def test_init_refuses_to_overwrite_and_names_the_files(tmp_path: Path) -> None:
    (tmp_path / "millpond.yml").write_text("project: mine\n")
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ScaffoldError, match=r"already has millpond\.yml; .*--force"):
        scaffold(tmp_path, "shop")
    assert (tmp_path / "millpond.yml").read_text() == "project: mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["millpond.yml", "notes.txt"]
    scaffold(tmp_path, "shop", force=True)
    assert "project: shop" in (tmp_path / "millpond.yml").read_text()
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("bad", ["", "---", "9 lives"])
def test_a_name_that_cannot_be_a_dbt_project_is_refused(bad: str) -> None:
    if bad == "9 lives":
        with pytest.raises(ScaffoldError, match="cannot name a project"):
            project_name(bad)
    else:
        with pytest.raises(ScaffoldError, match="letters, digits and _"):
            project_name(bad)


def test_an_adopted_dbt_project_gets_a_source_per_dbt_source_to_fill_in(tmp_path: Path) -> None:
    dbt_project = tmp_path / "their-dbt"
    shutil.copytree(ACME, dbt_project)
    project = tmp_path / "analytics"
    written = scaffold(project, "analytics", dbt_project=dbt_project)
    assert not any(p.startswith(("transform/", "inbox/", "tests/")) for p in written)
    text = (project / "millpond.yml").read_text()
    assert "project_dir: ../their-dbt" in text
    assert "# dbt source in models/staging/_shop__sources.yml" in text
    with pytest.raises(ConfigError) as refused:
        load_config(project / "millpond.yml", {})
    assert "sources.shop.kind: 'fill-in' is not a kind here; choose one of 'files'" in str(
        refused.value
    )
    filled = text.replace("kind: fill-in", "kind: files\n    path: inbox/shop", 1)
    (project / "millpond.yml").write_text(filled)
    config = load_config(project / "millpond.yml", {})
    assert config.sources["shop"].tables and config.dbt is not None
    assert (config.root / config.dbt.project_dir).resolve() == dbt_project.resolve()


def test_the_dbt_kinds_test_project_is_adopted_with_every_source(tmp_path: Path) -> None:
    """The project of tests/e2e/test_dbt_kinds.py (seeds, snapshot, microbatch, ...)."""
    kinds = REPO / "tests" / "fixtures" / "dbt_kinds" / "transform"
    scaffold(tmp_path / "p", "p", dbt_project=kinds)
    text = (tmp_path / "p" / "millpond.yml").read_text()
    sources = yaml.safe_load(text)["sources"]
    declared = yaml.safe_load(
        (kinds / "models" / "staging" / "shop" / "_shop__sources.yml").read_text()
    )["sources"]
    assert {name: s["kind"] for name, s in sources.items()} == {"shop": "fill-in"}
    assert sorted(sources["shop"]["tables"]) == sorted(t["name"] for t in declared[0]["tables"])


def test_a_dbt_source_millpond_would_not_load_into_is_pointed_out(tmp_path: Path) -> None:
    dbt_project = tmp_path / "dbt"
    (dbt_project / "models").mkdir(parents=True)
    (dbt_project / "dbt_project.yml").write_text("name: x\nprofile: x\n")
    (dbt_project / "models" / "sources.yml").write_text(
        "version: 2\nsources:\n  - name: crm\n    tables: [{name: contacts}]\n"
    )
    scaffold(tmp_path / "p", "p", dbt_project=dbt_project)
    text = (tmp_path / "p" / "millpond.yml").read_text()
    assert "dbt reads contacts from crm.contacts; millpond loads raw.crm__contacts" in text


def test_adopting_a_folder_without_a_dbt_project_says_so(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError, match=r"no dbt_project\.yml there"):
        scaffold(tmp_path / "p", "p", dbt_project=tmp_path)
    assert not (tmp_path / "p" / "millpond.yml").exists()


def test_millpond_init_without_a_terminal_asks_nothing(tmp_path: Path) -> None:
    made = millpond(tmp_path, "init", "team-data")
    assert made.returncode == 0, made.stderr
    assert "next:" in made.stdout and "just run" in made.stdout
    assert "project: team_data" in (tmp_path / "team-data" / "millpond.yml").read_text()
    again = millpond(tmp_path, "init", "team-data")
    assert again.returncode == 2 and "already has" in again.stderr
