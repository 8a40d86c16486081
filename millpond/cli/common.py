"""What every `millpond` command module shares: the consoles, `--config`, loading the config,
and a clear exit for bad input.

Commands live in their own modules (millpond/cli/status.py, logs.py, docs.py, ...) and are added
to the typer app in millpond/cli/main.py with one line each.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from millpond.core.config import ConfigError, MillpondConfig
from millpond.core.config_loading import load_config
from millpond.core.logs import setup_console
from millpond.core.masking import env_secrets, register_secrets

console = Console(stderr=True, soft_wrap=True)  # logs, progress, errors
out = Console(soft_wrap=True)  # results
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="millpond.yml to use (default: ./millpond.yml)"),
]


def load(
    config_path: Path | None,
    target: str | None = None,
    on_error: Callable[[str, dict[str, str]], None] | None = None,
) -> MillpondConfig:
    """The config (console logging set up first); a bad one exits with 2 and says why, after
    `on_error(message, env)` when given (a queued run records its failure)."""
    setup_console(
        sink=lambda message: console.print(message, end="", markup=False, highlight=False)
    )
    env = dict(os.environ)
    if target:
        env["MILLPOND_WAREHOUSE__TARGET"] = target
    try:
        config = load_config(config_path, env)
    except ConfigError as exc:
        console.print(f"[red]config error[/]: {exc}", markup=True, highlight=False)
        if on_error is not None:
            on_error(str(exc), env)
        raise typer.Exit(2) from None
    register_secrets(config.secrets() + env_secrets())
    return config


def fail(message: str, code: int = 2) -> NoReturn:
    """Say what is wrong on stderr and exit (2: unusable input, as everywhere in the CLI)."""
    console.print(f"[red]{message}[/]", highlight=False)
    raise typer.Exit(code)


def print_table(console: Console, table: Table) -> None:
    """A table as wide as it needs when the output is not a terminal (a pipe, a file, CI), so
    no cell is cut or wrapped to the 80 columns rich assumes there; on a terminal, its width."""
    if console.is_terminal:
        console.print(table)
        return
    wide = console.options.update(width=10_000)
    needed = console.measure(table, options=wide).maximum
    width = console.width  # print(width=...) never goes beyond the console's own width
    console.width = max(needed, width)
    try:
        console.print(table)
    finally:
        console.width = width
