"""`millpond lake ls|drop` and `millpond backfill`: look at, take back and re-land partitions.

The work is millpond.runtime.lake_actions; this module parses arguments and prints.
millpond/cli/main.py adds `lake_app` (as `lake`) and `backfill` to the app.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer

from millpond.cli.app import ConfigOption, TargetOption
from millpond.cli.common import console, load, out

lake_app = typer.Typer(
    help="The lake's partitions: list them, take one back.",
    no_args_is_help=True,
)


def _named_failure(exc: Exception) -> None:
    """A damaged warehouse or lake (errors that carry `retryable` name their file and the
    repair): said in one line, exit 1; anything else is a bug and keeps its traceback."""
    if not hasattr(exc, "retryable"):
        raise exc
    console.print(f"[red]{exc}[/]", highlight=False)
    raise typer.Exit(1) from None


def _context(config_path: ConfigOption, target: TargetOption, name: str) -> Any:
    """The command's context, its lake opened first: an S3 lake that cannot work (address,
    credentials, bucket) is refused naming the `lake.*` key, before anything is touched."""
    from millpond.ingest.s3 import S3Error
    from millpond.runtime.context import RunContext

    ctx = RunContext(load(config_path, target), name, orchestrator="cli", sources_only=True)
    try:
        ctx.lake  # noqa: B018 (opening it is the check)
    except S3Error as exc:
        console.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None
    return ctx


@lake_app.command("ls")
def ls(
    selector: Annotated[
        str | None, typer.Argument(help="SOURCE or SOURCE.TABLE (default: every table)")
    ] = None,
    config_path: ConfigOption = None,
    target: TargetOption = None,
) -> None:
    """List landed partitions with rows, files and whether the warehouse holds them; damaged
    ones (an unreadable manifest, a folder gone from the lake) too, and then exit 1.

    \b
    Examples:
      millpond lake ls
      millpond lake ls erp
      millpond lake ls erp.orders
    """
    from millpond.runtime.lake_actions import list_partitions

    ctx = _context(config_path, target, "lake-ls")
    try:
        rows = list_partitions(ctx, selector)
    except ValueError as exc:
        console.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None
    except Exception as exc:
        _named_failure(exc)
    if not rows:
        out.print("no partitions")
        return
    damaged = [r for r in rows if r.damage]
    width = max(len(r.partition_id) for r in rows)
    out.print(f"{'partition':<{width}}  {'rows':>12}  {'files':>5}  status", highlight=False)
    for r in rows:
        status = r.damage or ("loaded" if r.loaded else "not loaded")
        out.print(
            f"{r.partition_id:<{width}}  {r.rows:>12,}  {r.files:>5}  {status}", highlight=False
        )
    if damaged:
        console.print(
            f"[yellow]{len(damaged)} damaged partition(s): `millpond doctor --repair` sets them "
            "aside, or `millpond lake drop <partition>` deletes one[/]",
            highlight=False,
        )
        raise typer.Exit(1)


@lake_app.command("drop")
def drop(
    partition_id: Annotated[
        str, typer.Argument(help="a partition id as `millpond lake ls` prints it")
    ],
    config_path: ConfigOption = None,
    target: TargetOption = None,
) -> None:
    """Take back a landed partition: remove it from the warehouse's raw relation and from the
    lake, and record it in the ledger. The marts change at the next `millpond run`. If its
    export is still in the inbox, the next run lands it again: remove or fix the file first.
    A damaged partition (its manifest cannot be read) or one whose folder is gone from the
    lake, as `lake ls` lists them, is taken back the same way (docs/recovery.md).

    \b
    Examples:
      millpond lake drop erp/orders/ingest_date=2026-12-01/run=20261201T060000-ab12cd
      millpond lake drop erp/orders/ingest_date=2026-12-01/run=20261201T060000-ab12cd \\
          --target postgres
    """
    from millpond.ingest.replay import PartitionNotFound
    from millpond.runtime.lake_actions import drop as drop_partition

    ctx = _context(config_path, target, "lake-drop")
    try:
        manifest = drop_partition(ctx, partition_id)
    except (ValueError, PartitionNotFound) as exc:
        console.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None
    except Exception as exc:
        _named_failure(exc)
    if manifest is None:
        out.print(f"dropped {partition_id.strip('/')} (damaged or gone from the lake)")
        return
    files = ", ".join(f.name for f in manifest.files) or "no files"
    out.print(f"dropped {manifest.partition_id} ({manifest.rows:,} rows from {files})")


def backfill(
    source: Annotated[str, typer.Option("--source", help="the source to backfill")],
    first: Annotated[
        dt.datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="first ingest date")
    ],
    last: Annotated[
        dt.datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="last ingest date")
    ],
    table: Annotated[str | None, typer.Option("--table", help="one table (default: all)")] = None,
    config_path: ConfigOption = None,
    target: TargetOption = None,
) -> None:
    """Re-land the partitions of those ingest dates from the source when it still has their
    files (recognised by content hash), or replay them from the lake's own partitions, and load
    them into the raw relations again. Idempotent: twice leaves raw (and, after the next
    `millpond run`, the marts) unchanged.

    \b
    Examples:
      millpond backfill --source erp --from 2026-11-01 --to 2026-11-30
      millpond backfill --source erp --table orders --from 2026-12-01 --to 2026-12-01
    """
    from millpond.runtime.lake_actions import backfill as run_backfill

    if last < first:
        raise typer.BadParameter("--to is before --from", param_hint="--to")
    ctx = _context(config_path, target, "backfill")
    try:
        steps = run_backfill(ctx, source, table, first.date(), last.date())
    except ValueError as exc:
        console.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None
    except Exception as exc:
        _named_failure(exc)
    for step in steps:
        out.print(f"{step.action:<7} {step.partition_id} ({step.rows:,} rows)", highlight=False)
    out.print(
        f"{len(steps)} partitions backfilled"
        + ("; run `millpond run` to rebuild the marts" if steps else "")
    )
