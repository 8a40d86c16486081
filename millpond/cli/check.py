"""`millpond check`: validate millpond.yml, probe each source and server, parse the dbt project
and print the graph a run would run, writing nothing (the work is millpond.runtime.check; this
module parses arguments and prints)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from millpond.cli.app import ConfigOption, TargetOption
from millpond.cli.common import console, load, out, print_table


def check(
    config_path: ConfigOption = None,
    target: TargetOption = None,
    timeout: Annotated[
        float,
        typer.Option(help="seconds each probe may wait for a server", min=0.5, max=120),
    ] = 5.0,
) -> None:
    """Check that a run could start: millpond.yml is valid, each source answers (inbox folder
    or S3 prefix, database `select 1`, REST base URL), the lake, the ledger and the warehouse
    answer, the dbt project parses and its sources meet millpond.yml's tables. Prints the
    graph with what each extract would read. Writes nothing: no state folder, lake, ledger
    row or warehouse; an `embedded` ledger is reported, not started.

    Exit 0 when nothing is wrong, 1 when anything is (each problem names its key or file
    and what to do), 2 for a config that does not load.

    \b
    Examples:
      millpond check
      millpond check --target postgres --timeout 2
    """
    config = load(config_path, target)
    from millpond.runtime.check import check as run_check

    report = run_check(config, timeout)
    table = Table("area", "name", "seen")
    table.columns[1].no_wrap = True
    for checked in report.checked:
        state = "[red]problem[/]" if checked.problems else escape(checked.detail or "ok")
        table.add_row(checked.area, escape(checked.name), state)
    print_table(out, table)
    if report.graph is not None:
        out.print(f"\ngraph ({len(report.graph.nodes)} nodes):", highlight=False)
        out.print(escape(report.graph.to_text()), highlight=False)
    if report.reads:
        out.print("\nwhat each extract would read:", highlight=False)
        width = max(len(node) for node in report.reads)
        for node, reads in report.reads.items():
            out.print(escape(f"  {node:<{width}}  {reads}"), highlight=False)
    for note in report.notes:
        out.print(f"[yellow]note[/]: {escape(note)}", highlight=False)
    problems = report.problems
    if not problems:
        out.print("\nno problems found: a run can start", highlight=False)
        return
    console.print(f"\n[red]{len(problems)} problem(s)[/]:", highlight=False)
    for checked, problem in problems:
        console.print(f"  [red]{checked.area}[/] {escape(problem)}", highlight=False)
    raise typer.Exit(1)
