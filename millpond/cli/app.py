"""The `millpond` typer app and the options its commands share.

Every command module imports its options from here and none imports another command module,
so the CLI has no import circle: millpond/cli/main.py adds each command to `app` with one line
(the order of those lines is the order of `millpond --help`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="millpond: sources -> lake -> warehouse (DuckDB or PostgreSQL) -> dbt -> published "
    "marts, recorded in a ledger.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="millpond.yml to use (default: ./millpond.yml)"),
]
TargetOption = Annotated[
    str | None,
    typer.Option("--target", help="warehouse target for this command (overrides warehouse.target)"),
]
SelectOption = Annotated[
    list[str] | None,
    typer.Option(
        "--select",
        "-s",
        help="run only these dbt resources (dbt's syntax: fct_orders, +fct_orders, "
        "fct_orders+, tag:x, path:models/marts, a,b) or node ids; repeatable; their source "
        "tables are extracted and loaded first",
    ),
]
ExcludeOption = Annotated[
    list[str] | None,
    typer.Option("--exclude", help="leave these out (same syntax as --select); repeatable"),
]
VarsOption = Annotated[
    str | None,
    typer.Option(
        "--vars",
        help="dbt vars for this run, a YAML or JSON mapping (as dbt's --vars), merged over "
        "dbt.vars; values of vars named like secrets (or in dbt.secret_vars) are masked",
    ),
]
