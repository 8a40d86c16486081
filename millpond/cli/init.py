"""`millpond init`: a new project folder that runs (the work is millpond.scaffold; this module
asks, when a terminal is attached, and prints what to do next)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from millpond.cli.common import fail, out


def init(
    directory: Annotated[
        Path | None,
        typer.Argument(help="the project folder, made if missing [default: asked, else .]"),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="the project's name (its dbt project and profile) [default: folder]"),
    ] = None,
    dbt_project: Annotated[
        Path | None,
        typer.Option(
            "--dbt-project",
            help="adopt this existing dbt project: a millpond source per dbt source",
            file_okay=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="overwrite the template's files where they exist")
    ] = False,
) -> None:
    """Start a project of your own: millpond.yml (a commented example of every source kind),
    a dbt project with a staging model, a mart and tests, a sample export in inbox/, a
    notebook, serve/ with an example route, tests/ with a data test, a justfile, a
    .pre-commit-config.yaml and a README. It runs at once: `just run`, then `just test`.

    With --dbt-project, the project reads that dbt project where it is, and millpond.yml gets
    a source for each of its dbt sources, with the kind left for you to fill in.

    Questions are asked only on a terminal; flags answer them.

    \b
    Examples:
      millpond init shop-data
      millpond init analytics --dbt-project ../our-dbt
    """
    from millpond.scaffold import ScaffoldError, scaffold

    asking = sys.stdin.isatty() and sys.stdout.isatty()
    if directory is None:
        directory = Path(typer.prompt("project folder", default=".") if asking else ".")
    if name is None:
        folder = directory.resolve().name
        name = typer.prompt("project name", default=folder) if asking else folder
    try:
        directory.mkdir(parents=True, exist_ok=True)
        written = scaffold(directory, name, dbt_project=dbt_project, force=force)
    except (ScaffoldError, OSError) as exc:
        fail(str(exc))
    out.print(f"wrote {len(written)} files into {directory}:", highlight=False)
    for path in written:
        out.print(f"  {path}", highlight=False)
    steps = [f"cd {directory}"]
    if dbt_project is not None:
        steps.append("fill in each source's kind in millpond.yml (docs/sources.md), then")
        steps.append("millpond check")
    steps += ["just run", "just test"]
    out.print("next:\n  " + "\n  ".join(steps), highlight=False)
