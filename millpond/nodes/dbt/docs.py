"""dbt's documentation site (`dbt docs generate`), built into millpond's state dir.

dbt draws the lineage from sources through staging to marts itself; millpond only runs it
in-process over the parsed manifest with the profile it generated, and writes the site
(index.html, manifest.json, catalog.json) to `.millpond/docs`, never into the dbt project.
Building the catalog reads the warehouse, so it holds the target's writer lock, like a node.
"""

from __future__ import annotations

from pathlib import Path

from millpond.nodes.dbt.runner import _DBT_LOCK, DbtError, DbtProject, _drop_root_stream_handlers

SITE_FILES = ("index.html", "manifest.json", "catalog.json")


def generate_docs(project: DbtProject, site: Path) -> Path:
    """Write dbt's docs site into `site`; returns its index.html."""
    from dbt.cli.main import dbtRunner

    if project._manifest is None:
        project.parse()
    site.mkdir(parents=True, exist_ok=True)
    args = ["--quiet", "docs", "generate", *project._common_args(), "--target-path", str(site)]
    with project.target.writer_lock(), _DBT_LOCK:
        try:
            result = dbtRunner(manifest=project._manifest).invoke(args)
        finally:
            project.target.release()
            _drop_root_stream_handlers()
    missing = [name for name in SITE_FILES if not (site / name).is_file()]
    if not result.success or missing:
        raise DbtError(
            f"dbt docs generate failed in {project.project_dir}: "
            f"{result.exception or 'missing ' + ', '.join(missing)}"
        )
    return site / "index.html"
