"""`millpond doctor [--repair]`: find damaged state and name it by file; repair what the lake
allows (the work is millpond.runtime.doctor; this module parses arguments and prints)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from millpond.cli.app import ConfigOption
from millpond.cli.common import console, load, out, print_table


def doctor(
    config_path: ConfigOption = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="fix what can be fixed: rebuild the warehouse from the lake, publish again, "
            "delete temp files of killed publishes, set damaged partitions aside, correct "
            "the ledger",
        ),
    ] = False,
) -> None:
    """Check the warehouse, the published snapshots, the lake's manifests and the ledger
    against each other; print what is wrong, by file. Exit 1 if anything is (after
    --repair: if anything is left). docs/recovery.md tells each case.

    \b
    Examples:
      millpond doctor
      millpond doctor --repair
    """
    config = load(config_path)
    from millpond.core.locks import run_lock
    from millpond.core.logs import close_run_log, node_context, open_run_log
    from millpond.core.runid import new_run_id
    from millpond.runtime.context import RunContext
    from millpond.runtime.doctor import examine
    from millpond.runtime.doctor import repair as run_repair

    run_id = new_run_id()
    ctx = RunContext(config, run_id, orchestrator="doctor")
    open_run_log(config.logs_dir, run_id)
    try:
        # Under the run lock: no run changes the state between the checks and the repairs.
        with node_context(run_id), run_lock(config.locks_dir, 60):
            exam = examine(ctx)
            if repair:
                run_repair(ctx, exam)
    except TimeoutError:
        console.print("a run is going on: run `millpond doctor` when it is done", highlight=False)
        raise typer.Exit(1) from None
    finally:
        close_run_log(run_id)
    if not exam.findings:
        out.print("no problems found: warehouse, snapshots, lake and ledger agree")
        return
    table = Table("area", "where", "problem", "repaired" if repair else "--repair would")
    table.columns[1].no_wrap = True  # a path: whole, to be copied; the texts wrap instead
    for finding in exam.findings:
        if finding.done:
            action = finding.done
        elif finding.failed:
            action = f"[red]failed: {finding.failed}[/]"
        else:
            action = finding.repair or "[yellow]nothing (see docs/recovery.md)[/]"
        table.add_row(finding.area, finding.where, finding.problem, action)
    print_table(out, table)  # paths whole, not folded, in a pipe or a file
    left = exam.problems
    if exam.rebuild_marts:
        out.print(
            "the warehouse was rebuilt from the lake: run `millpond run` to rebuild and "
            "publish every model"
        )
    if not repair:
        console.print(
            f"{len(left)} problem(s): `millpond doctor --repair` fixes what it can",
            highlight=False,
        )
        raise typer.Exit(1)
    if left:
        console.print(f"[red]{len(left)} problem(s) left[/]: see docs/recovery.md", highlight=False)
        raise typer.Exit(1)
    out.print(f"repaired {len(exam.findings)} problem(s)")
