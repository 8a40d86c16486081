"""`millpond docs`: dbt's documentation and lineage (sources -> staging -> marts), generated
into .millpond/docs and served by a small static HTTP server."""

from __future__ import annotations

import functools
import http.server
from pathlib import Path
from typing import Annotated

import typer

from millpond.cli.app import ConfigOption, VarsOption
from millpond.cli.common import console, fail, load, out
from millpond.cli.dbt_vars import with_vars


def docs(
    port: Annotated[int, typer.Option(help="port to serve on (0: any free port)")] = 8080,
    host: Annotated[str, typer.Option(help="address to serve on")] = "127.0.0.1",
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="serve the site, or only generate it")
    ] = True,
    config_path: ConfigOption = None,
    dbt_vars: VarsOption = None,
) -> None:
    """Generate dbt's docs (models, columns, tests, exposures, lineage graph) and serve them.

    Examples: `millpond docs` (then open the printed URL; Ctrl-C stops it);
    `millpond docs --port 8081`; `millpond docs --no-serve` (only write .millpond/docs)."""
    from millpond.nodes.dbt import project
    from millpond.nodes.dbt.docs import generate_docs
    from millpond.nodes.dbt.runner import DbtError
    from millpond.runtime.context import RunContext

    config = with_vars(load(config_path), dbt_vars)
    if not config.has_dbt:
        fail(
            "no dbt section in millpond.yml (an ingest-only project): there are no dbt docs; "
            "`millpond graph` shows the graph, `/marts` the published raw relations"
        )
    site = config.state / "docs"
    try:
        index = generate_docs(project(RunContext(config, "docs")), site)
    except DbtError as exc:
        fail(str(exc))
    out.print(f"dbt docs: {index}", highlight=False)
    if serve:
        _serve(site, host, port)


def _serve(site: Path, host: str, port: int) -> None:
    """Serve the folder until Ctrl-C (the site is static: index.html reads the JSON beside it)."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    try:
        server = http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        fail(f"cannot serve the docs on {host}:{port}: {exc.strerror} (try --port)")
    with server:
        out.print(f"serving dbt docs at http://{host}:{server.server_port}/ (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            console.print("stopped")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """No access line per request on the console."""

    def log_message(self, format: str, *args: object) -> None:
        pass
