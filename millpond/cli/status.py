"""`millpond status [RUN]`: the last runs, or one run's nodes, from the ledger.

It reads the same queries the API serves (metadata.queries), so the CLI and `/runs` never
disagree on a run's status, rows or duration.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from millpond.cli.app import ConfigOption
from millpond.cli.common import fail, load, out, print_table, print_wrapped
from millpond.cli.summary import ID_COLUMNS, STATUS_STYLE, run_rows


@contextmanager
def ledger_connection(config: Any) -> Iterator[Any]:
    """A read connection to the ledger (the embedded server is started if it is not up)."""
    from millpond.metadata.db import connect, migrate, resolve_url

    try:
        url = resolve_url(config.metadata.url, config.state, keep_running=True)
        migrate(url)
        conn = connect(url)
    except Exception as exc:
        from millpond.core.masking import mask

        fail(f"metadata database unavailable: {mask(str(exc))}", code=1)
    with conn:
        yield conn


def status(
    run_id: Annotated[
        str | None,
        typer.Argument(help="a run id (or `last`); without it, the most recent runs"),
    ] = None,
    limit: Annotated[int, typer.Option(help="how many recent runs to list", min=1)] = 10,
    config_path: ConfigOption = None,
) -> None:
    """Show the most recent runs, or one run with every node, from the ledger.

    Examples: `millpond status` (the last 10 runs and their failed nodes);
    `millpond status last`; `millpond status 20261202T061500Z-1a2b3c`."""
    from millpond.metadata import queries

    config = load(config_path, needs=("state_dir", "metadata"), command="status")
    with ledger_connection(config) as conn:
        if run_id is None:
            runs = queries.list_runs(conn, limit)
            if not runs:
                out.print("no runs in the ledger yet (`millpond run` starts one)")
                return
            failed = {
                r["run_id"]: _failed_nodes(queries.run_nodes(conn, r["run_id"])) for r in runs
            }
            print_table(out, _runs_table(runs, failed))
            return
        if run_id == "last":
            runs = queries.list_runs(conn, 1)
            if not runs:
                fail("no runs in the ledger yet")
            run_id = runs[0]["run_id"]
        run = queries.get_run(conn, run_id)
        if run is None:
            recent = ", ".join(r["run_id"] for r in queries.list_runs(conn, 3)) or "none"
            fail(f"no run {run_id!r} in the ledger (most recent: {recent})")
        nodes = queries.run_nodes(conn, run_id)
    print_table(out, _nodes_table(run, nodes))
    rows, seconds = run_rows(run)
    out.print(
        f"run {run['run_id']}: {_styled(run['status'])}; {run['trigger'] or '-'} via "
        f"{run['orchestrator'] or '-'} on {run['target'] or '-'}; started "
        f"{_when(run['started_at'])}"
        + (f", {seconds:.1f} s" if seconds is not None else "")
        + (f"; {rows:,} rows loaded" if rows is not None else ""),
        highlight=False,
    )
    if run["error"]:
        print_wrapped(out, f"  [red]{escape(str(run['error']))}[/]")


def _failed_nodes(nodes: list[dict[str, Any]]) -> list[str]:
    """Nodes whose last attempt failed (retried nodes that then succeeded are not)."""
    last: dict[str, dict[str, Any]] = {}
    for n in nodes:
        if n["node_id"] not in last or n["attempt"] >= last[n["node_id"]]["attempt"]:
            last[n["node_id"]] = n
    return sorted(i for i, n in last.items() if n["status"] == "failed")


def _runs_table(runs: list[dict[str, Any]], failed: dict[str, list[str]]) -> Table:
    table = Table(title="millpond runs", header_style="bold")
    for column, justify in [
        ("run", "left"),
        ("status", "left"),
        ("trigger", "left"),
        ("started", "left"),
        ("s", "right"),
        ("nodes", "right"),
        ("rows", "right"),
        ("failed nodes", "left"),
    ]:
        table.add_column(
            column,
            justify=justify,  # type: ignore[arg-type]
            overflow="fold",
            no_wrap=column in ID_COLUMNS,  # an id cut or folded cannot be copied
        )
    for run in runs:
        rows, seconds = run_rows(run)
        table.add_row(
            run["run_id"],
            _styled(run["status"]),
            run["trigger"] or "",
            _when(run["started_at"]),
            f"{seconds:.1f}" if seconds is not None else "",
            str(run["nodes"] or 0),
            f"{rows:,}" if rows is not None else "",
            ", ".join(failed.get(run["run_id"], [])),
        )
    return table


def _nodes_table(run: dict[str, Any], nodes: list[dict[str, Any]]) -> Table:
    table = Table(title=f"run {run['run_id']}", header_style="bold")
    for column, justify in [
        ("node", "left"),
        ("kind", "left"),
        ("status", "left"),
        ("try", "right"),
        ("rows", "right"),
        ("ms", "right"),
        ("error", "left"),
    ]:
        table.add_column(
            column,
            justify=justify,  # type: ignore[arg-type]
            overflow="fold",
            no_wrap=column in ID_COLUMNS,  # an id cut or folded cannot be copied
        )
    for n in nodes:
        table.add_row(
            n["node_id"],
            n["kind"] or "",
            _styled(n["status"]),
            str(n["attempt"]),
            f"{n['rows']:,}" if n["rows"] is not None else "",
            f"{n['duration_ms']:,}" if n["duration_ms"] is not None else "",
            n["error"] or "",
        )
    return table


def _styled(status: str | None) -> str:
    style = STATUS_STYLE.get(status or "", "")
    return f"[{style}]{status}[/]" if style else str(status or "")


def _when(at: Any) -> str:
    return at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if at is not None else ""
