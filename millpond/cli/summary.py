"""What a person sees during and after a run: a progress bar, then one summary table."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from millpond.cli.common import print_table, print_wrapped
from millpond.nodes.publish import PUBLISH_NODE

ID_COLUMNS = {"node", "run"}
STATUS_STYLE = {
    "success": "green",
    "failed": "bold red",
    "skipped": "yellow",
    "abandoned": "yellow",
    "unchanged": "cyan",
    "running": "cyan",
    "queued": "cyan",
}


def summary_table(outcomes: Iterable[Any], order: list[str]) -> Table:
    """Nodes in graph order with status, attempt, rows, bytes, duration and tests."""
    table = Table(title="millpond run", show_lines=False, header_style="bold")
    for column, justify in [
        ("node", "left"),
        ("status", "left"),
        ("try", "right"),
        ("rows", "right"),
        ("MB", "right"),
        ("ms", "right"),
        ("tests", "right"),
    ]:
        table.add_column(
            column,
            justify=justify,  # type: ignore[arg-type]
            overflow="fold",
            no_wrap=column in ID_COLUMNS,  # an id cut or folded cannot be copied
        )
    by_id = {o.node_id: o for o in outcomes}
    for node_id in order:
        o = by_id.get(node_id)
        if o is None:
            table.add_row(node_id, "[dim]not run[/]", "", "", "", "", "")
            continue
        tests = o.detail.get("tests", []) if o.detail else []
        passed = sum(1 for t in tests if t["status"] == "pass")
        style = STATUS_STYLE.get(o.status, "")
        table.add_row(
            node_id,
            f"[{style}]{o.status}[/]" if style else o.status,
            str(o.attempt) if o.attempt else "",
            f"{o.rows:,}" if o.rows is not None else "",
            f"{o.bytes / 1e6:.1f}" if o.bytes else "",
            f"{o.duration_ms:,}",
            f"{passed}/{len(tests)}" if tests else "",
        )
    return table


def run_rows(run: dict[str, Any]) -> tuple[int | None, float | None]:
    """A ledger run's rows and duration in seconds, as the API serves them (the definitions
    are in millpond.runtime.totals); None where the ledger has none."""
    rows = (run.get("summary") or {}).get("rows")
    duration_ms = run.get("duration_ms")
    return rows, (duration_ms / 1000 if duration_ms is not None else None)


@dataclass(frozen=True)
class RunFigures:
    """What a finished run's summary shows. `elapsed_s` and `rows` are the run's duration and
    rows as the ledger and the API have them (millpond.runtime.totals)."""

    run_id: str
    status: str
    elapsed_s: float
    rows: int
    outcomes: list[Any]
    order: list[str]  # the graph's node order, for the table
    links: dict[str, str] = field(default_factory=dict)
    snapshot: str | None = None
    warnings: Iterable[str] = ()
    # What publish exposed: relation -> rows (with `snapshot`); or why nothing is published
    # by design (an ingest-only project with publish.raw: false).
    published: dict[str, int] = field(default_factory=dict)
    unpublished: str | None = None


SHOWN_RELATIONS = 8  # the published relations named in the summary; the rest counted


def published_line(published: dict[str, int]) -> str:
    """`published 2 relations: raw.erp__orders (5 rows), ...`, the first few named."""
    names = sorted(published)
    shown = ", ".join(f"{n} ({published[n]:,} rows)" for n in names[:SHOWN_RELATIONS])
    more = f" and {len(names) - SHOWN_RELATIONS} more" if len(names) > SHOWN_RELATIONS else ""
    return f"published {len(names)} relation{'s' if len(names) != 1 else ''}: {shown}{more}"


def print_summary(console: Console, run: RunFigures) -> None:
    """The summary table, then one line: status, duration, nodes, rows loaded, tests."""
    outcomes, status = run.outcomes, run.status
    print_table(console, summary_table(outcomes, run.order))
    tests = [t for o in outcomes for t in (o.detail or {}).get("tests", [])]
    failed_tests = [t for t in tests if t["status"] in ("fail", "error")]
    unchanged = [o for o in outcomes if o.status == "unchanged"]
    color = "green" if status == "success" else "red"
    console.print(
        f"[bold {color}]run {run.run_id}: {status}[/] in {run.elapsed_s:.1f} s; "
        f"{len(outcomes)} nodes, {run.rows:,} raw rows loaded, "
        f"{len(tests) - len(failed_tests)}/{len(tests)} tests passed"
        + (f", {len(unchanged)} unchanged" if unchanged else "")
    )
    for warning in run.warnings:  # e.g. a dbt source no table loads (millpond.runtime.wiring)
        print_wrapped(console, f"  [yellow]warning[/]: {escape(warning)}")
    for t in failed_tests:
        console.print(
            f"  [red]test {t['test']}: {t['status']}[/] ({t.get('failures')} failing rows)"
        )
    for o in outcomes:
        if o.status == "failed":
            print_wrapped(console, f"  [red]{o.node_id}[/]: {escape(str(o.error))}")
        for warning in (o.detail or {}).get("warnings", []):  # e.g. a stalled cursor
            print_wrapped(console, f"  [bold yellow]{o.node_id}[/]: {escape(str(warning))}")
        if (o.detail or {}).get("bad_rows"):  # landed, with bad rows kept aside
            where = ", ".join(o.detail.get("quarantine", []))
            console.print(f"  [yellow]{o.node_id}[/]: {o.detail['bad_rows']:,} bad rows in {where}")
    if run.snapshot:
        console.print(f"published snapshot: {run.snapshot}")
        if run.published:
            print_wrapped(console, escape(published_line(run.published)))
    elif run.unpublished and status == "success":
        print_wrapped(console, f"[yellow]{escape(run.unpublished)}[/]")
    elif outcomes and all(o.status == "unchanged" for o in outcomes):
        console.print("nothing new: nothing landed, loaded, rebuilt or published")
    elif any(o.node_id == PUBLISH_NODE and o.status == "unchanged" for o in outcomes):
        console.print("nothing new to publish: readers keep the current snapshot")
    elif status != "success":
        console.print("nothing published: readers keep the previous snapshot")
    for name, url in run.links.items():
        console.print(f"{name}: {url}")
