"""What every `millpond` command module shares: the consoles, loading the config, and a clear
exit for bad input.

Commands live in their own modules (millpond/cli/status.py, logs.py, docs.py, ...) and are added
to the typer app (millpond/cli/app.py, with the shared options) in millpond/cli/main.py with one
line each.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from millpond.core.config import ConfigError, MillpondConfig
from millpond.core.config_loading import load_config, load_config_lenient, missing_for
from millpond.core.logs import setup_console
from millpond.core.masking import env_secrets, register_secrets

console = Console(stderr=True, soft_wrap=True)  # logs, progress, errors
out = Console(soft_wrap=True)  # results


def load(
    config_path: Path | None,
    target: str | None = None,
    on_error: Callable[[str, dict[str, str]], None] | None = None,
    needs: tuple[str, ...] | None = None,
    command: str = "",
) -> MillpondConfig:
    """The config (console logging set up first); a bad one exits with 2 and says why, after
    `on_error(message, env)` when given (a queued run records its failure).

    `needs`: the only keys this command uses (`state_dir`, `metadata`, ...): a ${VAR} the
    config reads elsewhere (a source's token) may then be unset, so `millpond down` or `logs`
    work in a shell without the sources' secrets; one it needs is still an error."""
    setup_console(
        sink=lambda message: console.print(message, end="", markup=False, highlight=False)
    )
    quiet_dbt_colours(console)
    env = dict(os.environ)
    if target:
        env["MILLPOND_WAREHOUSE__TARGET"] = target
    try:
        if needs is None:
            config = load_config(config_path, env)
        else:
            config, unset = load_config_lenient(config_path, env)
            problem = missing_for(unset, needs, f"millpond {command}".strip())
            if problem:
                raise ConfigError(problem)
    except ConfigError as exc:
        message = str(exc)
        if target and os.environ.get("MILLPOND_WAREHOUSE__TARGET") != target:
            message = message.replace("set by MILLPOND_WAREHOUSE__TARGET", "set by --target")
        console.print(f"[red]config error[/]: {escape(message)}", markup=True, highlight=False)
        if on_error is not None:
            on_error(message, env)
        raise typer.Exit(2) from None
    register_secrets(config.secrets() + env_secrets())
    return config


def fail(message: str, code: int = 2) -> NoReturn:
    """Say what is wrong on stderr and exit (2: unusable input, as everywhere in the CLI)."""
    console.print(f"[red]{message}[/]", highlight=False)
    raise typer.Exit(code)


# Lines written to a file or a pipe (CI logs, `| less`) stay about this wide: long texts
# (errors) wrap inside their column or under their line; ids are never cut.
PIPE_WIDTH = 120


def print_table(console: Console, table: Table) -> None:
    """A table on a terminal at its width; into a pipe or a file, no wider than it needs,
    at most PIPE_WIDTH unless its ids need more (columns of ids are no_wrap: an id cut or
    folded cannot be copied), long texts wrapped in their column."""
    if console.is_terminal:
        console.print(table)
        return
    wide = console.options.update(width=10_000)
    measured = console.measure(table, options=wide)
    width = console.width  # print(width=...) never goes beyond the console's own width
    console.width = min(measured.maximum, max(PIPE_WIDTH, measured.minimum))
    try:
        console.print(table)
    finally:
        console.width = width


def print_wrapped(console: Console, text: str, indent: str = "    ") -> None:
    """A long line (an error) wrapped to PIPE_WIDTH when written to a pipe or a file, each of
    its own lines on its own (a SQL error's caret stays under its line), the continuations
    indented; on a terminal, the terminal wraps it."""
    if console.is_terminal or all(len(line) <= PIPE_WIDTH for line in text.splitlines()):
        console.print(text, highlight=False)
        return
    import textwrap

    lines = []
    for line in text.splitlines():
        lead = line[: len(line) - len(line.lstrip())]
        lines += textwrap.wrap(
            line,
            PIPE_WIDTH,
            subsequent_indent=lead + indent,
            break_long_words=False,
            break_on_hyphens=False,
            drop_whitespace=True,
        ) or [""]
    console.print("\n".join(lines), highlight=False)


def quiet_dbt_colours(console: Console) -> None:
    """dbt writes ANSI colour codes to its console lines and log file unless told not to:
    off for its file always, and for the console when it is not a terminal."""
    os.environ.setdefault("DBT_USE_COLORS_FILE", "false")
    if not console.is_terminal:
        os.environ.setdefault("DBT_USE_COLORS", "false")


def quiet_prefect() -> None:
    """Prefect's own console chatter (task created/finished) would drown the progress bar."""
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    # Node logs reach the console through loguru already; Prefect's copies of them go to its
    # UI only (flows.pipeline keeps its run loggers off the console while the graph runs).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
