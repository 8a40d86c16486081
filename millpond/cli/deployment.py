"""`millpond ui` and the hidden `millpond serve-deployment` it starts in the background.

`ui` starts (or reuses) the local Prefect server with a UI that calls the configured port, and
the process serving the deployment (flows/deployment.py); `serve-deployment` is that process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from millpond.cli.app import ConfigOption
from millpond.cli.common import console, load, out, quiet_prefect
from millpond.core.config_loading import find_config


def ui(config_path: ConfigOption = None) -> None:
    """Start (or reuse) the local Prefect server and serve the millpond deployment on the
    `schedule` of millpond.yml; print the UI address. Both keep running until `millpond down`.

    Example: `millpond ui`, then start a run from the UI's Deployments page, or
    `prefect deployment run millpond/millpond -p full_refresh=true`.
    """
    config = load(config_path)
    quiet_prefect()
    from millpond.flows.deployment import SERVE_COMMAND, ensure_served
    from millpond.flows.prefect_api import ui_url
    from millpond.flows.server import ensure_server

    try:
        api = ensure_server(config)
        command = [
            str(Path(sys.executable).with_name("millpond")),
            SERVE_COMMAND,
            "--config",
            str(find_config(config_path)),
        ]
        pid, started = ensure_served(config, command, api)
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(1) from None
    flow_name, name = config.project, config.project
    out.print(f"Prefect UI: {ui_url(api)}")
    out.print(
        f"deployment {flow_name}/{name}: schedule {config.schedule or 'none'}, "
        f"{'served' if started else 'already served'} by pid {pid} "
        f"(log: {config.logs_dir / 'prefect-deployment.log'})"
    )


def serve_deployment(config_path: ConfigOption = None) -> None:
    """Serve the deployment in the foreground until SIGTERM (what `millpond ui` starts)."""
    config = load(config_path)
    quiet_prefect()
    os.environ["MILLPOND_CONFIG"] = str(find_config(config_path))
    from millpond.runtime.deployment import serve_deployment as serve

    serve(config)
