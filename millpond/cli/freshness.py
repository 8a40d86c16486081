"""`millpond check-freshness`: the source tables with no landing for longer than their
`expect_every`, from the ledger alone (the work is millpond.runtime.monitoring)."""

from __future__ import annotations

import typer
from rich.markup import escape

from millpond.cli.app import ConfigOption
from millpond.cli.common import fail, load, out


def check_freshness(config_path: ConfigOption = None) -> None:
    """Check every source table with an `expect_every` (or `monitors.freshness.expect_every`)
    against its last landing in the ledger; record each stale table and tell the webhooks
    whose `on:` has `freshness`. Runs check this too when they close; schedule this command
    (cron) where runs may stop altogether.

    Exit 0 when every checked table is fresh, 1 when one is stale, 2 when the ledger cannot
    answer or the config does not load (docs/monitoring.md).

    \b
    Examples:
      millpond check-freshness
      millpond check-freshness --config /srv/stack/millpond.yml
    """
    config = load(config_path, command="check-freshness")
    from millpond.metadata.ledger import LedgerUnavailableError
    from millpond.nodes.monitors.freshness import cadences
    from millpond.runtime.monitoring import freshness_now

    if not cadences(config):
        out.print(
            "no table has an expect_every (or monitors.freshness is off): nothing to check",
            highlight=False,
        )
        return
    try:
        alerts, sent = freshness_now(config)
    except LedgerUnavailableError as exc:
        fail(f"freshness not checked: the ledger cannot answer ({exc})")
    for alert in alerts:
        style = "red" if alert.severity == "error" else "yellow"
        out.print(f"[{style}]stale[/] {escape(alert.message)}", highlight=False)
    for delivery in sent:
        if not delivery.get("ok"):
            out.print(
                f"[yellow]webhook {escape(delivery['webhook'])} not told: "
                f"{escape(str(delivery.get('error')))}[/]",
                highlight=False,
            )
    if alerts:
        raise typer.Exit(1)
    out.print(f"{len(cadences(config))} tables checked: all fresh", highlight=False)
