"""dbt's documentation site (`dbt docs generate`), built into millpond's state dir.

dbt draws the lineage from sources through staging to marts itself; millpond only runs it
in-process over the parsed manifest with the profile it generated, and writes the site
(index.html, manifest.json, catalog.json) to `.millpond/docs`, never into the dbt project.
Building the catalog reads the warehouse, so it holds the target's writer lock, like a node.
"""

from __future__ import annotations

from pathlib import Path

from millpond.nodes.dbt.runner import DbtError, DbtProject
from millpond.nodes.dbt.secrets import scrub_tree

SITE_FILES = ("index.html", "manifest.json", "catalog.json")


def generate_docs(project: DbtProject, site: Path) -> Path:
    """Write dbt's docs site into `site`; returns its index.html."""
    site.mkdir(parents=True, exist_ok=True)
    with project.target.writer_lock():
        try:
            result = project.invoke(["docs", "generate"], ["--target-path", str(site)])
        finally:
            scrub_tree(site)  # compiled SQL in manifest.json may hold a secret var's value
    missing = [name for name in SITE_FILES if not (site / name).is_file()]
    if not result.success or missing:
        raise DbtError(
            f"dbt docs generate failed in {project.project_dir}: "
            f"{result.exception or 'missing ' + ', '.join(missing)}"
        )
    return site / "index.html"
