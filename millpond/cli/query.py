"""`millpond query SQL`: one read-only query over what readers get, from the shell.

It reads through the configured target's marts reader (`TargetKind.reader`), the very
connection the API and a team's routers read through: DuckDB's published snapshot opened
read-only and hardened, PostgreSQL's published schemas in a read-only session. So a query
never touches the warehouse a run is writing, and cannot change anything.
"""

from __future__ import annotations

import csv
import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from millpond.cli.app import ConfigOption, TargetOption
from millpond.cli.common import fail, load, out, print_table


def query(
    sql: Annotated[str, typer.Argument(help="one SELECT over the published relations")],
    output: Annotated[
        str, typer.Option("--format", help="table, csv or json (one object per row)")
    ] = "table",
    config_path: ConfigOption = None,
    target: TargetOption = None,
) -> None:
    """Run one read-only query over the published marts (and the published raw relations of
    an ingest-only project), what the API and notebooks read.

    Relations are named as published: on DuckDB `marts.fct_orders`, `raw.erp__orders`; on
    PostgreSQL `published_marts.fct_orders`, `published_raw.erp__orders`
    (`warehouse.published_prefix`).

    \b
    Examples:
      millpond query "select count(*) from raw.erp__orders"
      millpond query "select * from marts.dim_customer limit 5" --format csv
    """
    if output not in ("table", "csv", "json"):
        fail(f"--format: {output!r} is not one of table, csv, json")
    config = load(config_path, target)
    from millpond.core.masking import mask
    from millpond.core.registry import TARGETS

    try:
        reader = TARGETS.get(config.target_name).reader(config)
    except FileNotFoundError:
        fail("nothing published yet: run `millpond run` first")
    except Exception as exc:
        fail(f"cannot open the published marts: {mask(str(exc))}")
    try:
        # psycopg reads `%` as a placeholder whenever parameters are passed (none are).
        text = sql.replace("%", "%%") if reader.placeholder == "%s" else sql
        rows = reader.rows(text, [])
    except Exception as exc:
        fail(f"query failed: {mask(str(exc)).strip()}", code=1)
    finally:
        reader.close()
    _print(rows, output)


def _print(rows: list[dict[str, Any]], output: str) -> None:
    if output == "json":
        for row in rows:
            sys.stdout.write(json.dumps(row, default=str) + "\n")
        return
    names = list(rows[0]) if rows else []
    if output == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        writer.writerows([row[n] for n in names] for row in rows)
        return
    table = Table(*names, header_style="bold")
    for row in rows:
        table.add_row(*(escape("" if v is None else str(v)) for v in row.values()))
    print_table(out, table)
    out.print(f"{len(rows):,} row{'s' if len(rows) != 1 else ''}", highlight=False)
