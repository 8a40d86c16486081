"""`millpond init`: a project of a team's own, with the card's layout, that runs at once
(`just run`, `just test`), or around a dbt project the team already has.

The template is plain files under `template/` (the project name is `__PROJECT__` in them), so
what a new project gets is what a reader sees here; dotfiles are stored without their dot
(`_gitignore`) so that tools run on millpond's own repository leave them alone."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).parent / "template"
PLACEHOLDER = "__PROJECT__"
DOTFILES = {"_gitignore": ".gitignore", "_pre-commit-config.yaml": ".pre-commit-config.yaml"}
# What an adopted dbt project replaces: the example models, their inbox, and what reads them.
EXAMPLE_ONLY = ("transform/", "inbox/", "tests/", "serve/routes.py")
NAME = re.compile(r"[a-z_][a-z0-9_]*")
FILL_IN = "fill-in"  # the kind an adopted dbt source gets until the team names it


class ScaffoldError(Exception):
    """What stops `millpond init`, said so the user can act on it."""


@dataclass
class DbtSource:
    """One source of an existing dbt project, and what it reads."""

    name: str
    tables: list[str]
    defined_in: Path
    # tables whose relation is not where millpond loads them (raw.<source>__<table>)
    elsewhere: dict[str, str] = field(default_factory=dict)


def project_name(raw: str) -> str:
    """A project name usable as a dbt project and profile name (lowercase, digits, `_`)."""
    name = re.sub(r"[^a-z0-9_]+", "_", raw.strip().lower()).strip("_")
    if not NAME.fullmatch(name):
        raise ScaffoldError(
            f"{raw!r} cannot name a project: use letters, digits and _ (e.g. --name my_team)"
        )
    return name


def template_files(adopting: bool) -> list[tuple[Path, str]]:
    """(template file, its path in the new project), sorted."""
    found = []
    for source in sorted(p for p in TEMPLATE.rglob("*") if p.is_file()):
        rel = source.relative_to(TEMPLATE).as_posix()
        if "__pycache__" in rel:
            continue
        dest = DOTFILES.get(rel, rel)
        if adopting and dest.startswith(EXAMPLE_ONLY):
            continue
        found.append((source, dest))
    return found


def scaffold(
    root: Path, name: str, dbt_project: Path | None = None, force: bool = False
) -> list[str]:
    """Write the project under `root`; the files written, relative to it.

    Refuses (ScaffoldError) when a file it would write exists, unless `force`; files of the
    folder that the template does not name are never touched."""
    project = project_name(name)
    adopted = read_dbt_sources(dbt_project) if dbt_project is not None else None
    files = template_files(adopting=adopted is not None)
    existing = [dest for _, dest in files if (root / dest).exists()]
    if existing and not force:
        shown = ", ".join(existing[:5]) + (" ..." if len(existing) > 5 else "")
        raise ScaffoldError(
            f"{root} already has {shown}; choose an empty folder or pass --force to overwrite "
            "these files (others are left alone)"
        )
    written = []
    for source, dest in files:
        text = source.read_text(encoding="utf-8").replace(PLACEHOLDER, project)
        if dest == "millpond.yml" and adopted is not None and dbt_project is not None:
            text = adopted_config(text, root, dbt_project, adopted)
        target = root / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(dest)
    if adopted is None:
        (root / "airflow_compat" / "dags").mkdir(parents=True, exist_ok=True)
    return written


def read_dbt_sources(dbt_project: Path) -> list[DbtSource]:
    """The sources an existing dbt project declares, from its YAML (dbt itself is not run)."""
    project_file = dbt_project / "dbt_project.yml"
    if not project_file.is_file():
        raise ScaffoldError(f"--dbt-project {dbt_project}: no dbt_project.yml there")
    settings = _yaml(project_file) or {}
    sources: dict[str, DbtSource] = {}
    for folder in settings.get("model-paths") or ["models"]:
        for path in sorted((dbt_project / folder).rglob("*.y*ml")):
            for entry in (_yaml(path) or {}).get("sources") or []:
                if not isinstance(entry, dict) or "name" not in entry:
                    continue
                source = sources.setdefault(
                    entry["name"], DbtSource(entry["name"], [], path.relative_to(dbt_project))
                )
                for table in entry.get("tables") or []:
                    if not isinstance(table, dict) or "name" not in table:
                        continue
                    source.tables.append(table["name"])
                    schema = entry.get("schema", entry["name"])
                    relation = f"{schema}.{table.get('identifier', table['name'])}"
                    if relation != f"raw.{entry['name']}__{table['name']}":
                        source.elsewhere[table["name"]] = relation
    return list(sources.values())


def adopted_config(text: str, root: Path, dbt_project: Path, sources: list[DbtSource]) -> str:
    """millpond.yml around an existing dbt project: its path, and one source per dbt source
    with the kind left to fill in (the config refuses `fill-in`, naming the key)."""
    relative = _relative(dbt_project, root)
    text = text.replace("  project_dir: transform ", f"  project_dir: {relative} ", 1)
    text = re.sub(
        r"  routers: .*\n",
        '  routers: []                        # ["package.module:router"]\n',
        text,
    )
    start = text.index("sources:\n") + len("sources:\n")
    end = text.index("  # A database")
    lines = []
    for source in sources:
        lines.append(f"  {source.name}:                  # dbt source in {source.defined_in}")
        lines.append(
            f"    kind: {FILL_IN}                 # files | sql | odbc | rest (docs/sources.md)"
        )
        lines.append(f"    tables: [{', '.join(source.tables)}]")
        for table, relation in source.elsewhere.items():
            loaded = f"{source.name}__{table}"
            lines.append(
                f"    # dbt reads {table} from {relation}; millpond loads raw.{loaded}: "
                f"set schema: raw, identifier: {loaded} in {source.defined_in}"
            )
        lines.append("")
    if not sources:
        lines.append("  {}  # the dbt project declares no sources: add yours here\n")
    return text[:start] + "\n".join(lines) + "\n" + text[end:]


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()
    except ValueError:  # another drive
        return path.resolve().as_posix()


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScaffoldError(f"{path}: cannot read it as YAML ({exc})") from None
