"""The `millpond` command: a thin layer over config, graph and execute.

Every command takes `--config` (default: ./millpond.yml or $MILLPOND_CONFIG). Exit codes: 0 on
success, 1 when a run or node failed, 2 for unusable input (bad config, unknown node).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from millpond.cli.app import (
    ConfigOption,
    ExcludeOption,
    SelectOption,
    TargetOption,
    VarsOption,
    app,
)
from millpond.cli.check import check
from millpond.cli.common import console, fail, load, out, quiet_prefect
from millpond.cli.dbt_vars import with_vars
from millpond.cli.deployment import serve_deployment, ui
from millpond.cli.docs import docs
from millpond.cli.doctor import doctor
from millpond.cli.freshness import check_freshness
from millpond.cli.init import init
from millpond.cli.lake import backfill, lake_app
from millpond.cli.logs import logs
from millpond.cli.query import query
from millpond.cli.status import status
from millpond.cli.tasks import run_finish, run_start
from millpond.core.config import MillpondConfig
from millpond.core.config_loading import find_config
from millpond.core.logs import close_run_log, logger, node_context, open_run_log
from millpond.core.masking import mask

if TYPE_CHECKING:  # the runtime is imported by the commands that need it, not by `--help`
    from millpond.runtime.context import RunContext
    from millpond.runtime.flow_runs import FlowHooks, NewFlowRun
    from millpond.runtime.start import RunEnd


def _build_graph(
    config: MillpondConfig,
    select: list[str] | None = None,
    exclude: list[str] | None = None,
    with_exposures: list[dict[str, Any]] | None = None,
) -> Any:
    """The graph (or its selected part) from the config and a fresh dbt parse; a broken
    project or a selection of nothing exits with 2. `with_exposures` is filled with the dbt
    exposures reading the graph's nodes."""
    from millpond.core.graph import GraphError
    from millpond.core.registry import RegistryError
    from millpond.nodes.dbt.runner import DbtError
    from millpond.nodes.dbt.select import SelectionError
    from millpond.runtime.context import RunContext

    ctx = RunContext(config, "graph", select=tuple(select or ()), exclude=tuple(exclude or ()))
    try:
        built = ctx.graph
    except (DbtError, GraphError, RegistryError, SelectionError) as exc:
        console.print(f"[red]cannot build the graph[/]: {exc}", highlight=False)
        raise typer.Exit(2) from None
    if ctx.selection.publish_note:
        console.print(ctx.selection.publish_note, highlight=False)
    if with_exposures is not None and "dbt" in ctx.resource_keys():  # a dbt project is used
        from millpond.nodes.dbt import exposures

        with_exposures.extend(exposures(ctx, list(built.nodes)))
    return built


@app.command()
def run(  # noqa: PLR0913 (a command's parameters are its documented options)
    config_path: ConfigOption = None,
    demo_scale: Annotated[
        float | None,
        typer.Option(
            "--demo-if-empty",
            help="demo data at this scale into empty inboxes of sources with nothing landed",
        ),
    ] = None,
    trigger: Annotated[
        str, typer.Option(help="recorded in the ledger: cli, schedule, api")
    ] = "cli",
    target: TargetOption = None,
    select: SelectOption = None,
    exclude: ExcludeOption = None,
    full_refresh: Annotated[
        bool,
        typer.Option(
            "--full-refresh",
            help="dbt's --full-refresh: incremental models and seeds rebuilt from scratch "
            "(raw is the lake: nothing is re-landed)",
        ),
    ] = False,
    dbt_vars: VarsOption = None,
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run-id",
            hidden=True,
            help="the id of a run queued in the ledger already (what `POST /runs` starts)",
        ),
    ] = None,
    retry_of: Annotated[
        str | None,
        typer.Option(
            "--retry-of",
            hidden=True,
            help="the run this one retries (what `POST /runs/{id}/retry` starts)",
        ),
    ] = None,
) -> None:
    """Run the graph as a Prefect flow: extract, load, dbt, publish; print a summary.

    Examples: `millpond run`; `millpond run --select +fct_orders` (fct_orders, the models it
    reads and their source tables); `millpond run -s tag:finance --exclude agg_monthly_revenue`;
    `millpond run --full-refresh`; `millpond run --vars '{"start_date": "2024-01-01"}'`.
    Preview a selection with `millpond graph --select ...`.
    After a failed run, `millpond retry` reruns only what it did not finish.
    """
    if retry_of is not None and (select or exclude or full_refresh):
        fail(
            "--retry-of reruns the part of the graph its run had, with its options: "
            "--select, --exclude and --full-refresh cannot be given with it"
        )
    if run_id is not None:
        config = _load_queued(run_id, trigger, config_path, target)
    else:
        config = load(config_path, target)
    config = with_vars(config, dbt_vars)
    _run(config, trigger, run_id, select, exclude, full_refresh, demo_scale, retry_of)


@app.command()
def retry(
    run_id: Annotated[
        str,
        typer.Argument(
            metavar="RUN", help="the run to retry: a run id, or `last` (the latest run)"
        ),
    ] = "last",
    config_path: ConfigOption = None,
) -> None:
    """Start a new run that reruns what a failed run did not finish.

    Its failed, skipped and never-started nodes rerun with everything downstream of them
    (the dbt models among them in one dbt build); every other node is kept as that run left
    it (`unchanged`, not run again). The new run records which run it retries (`millpond
    status`, `GET /runs/{id}`: `retry_of`), takes that run's --select/--exclude/--full-refresh
    and its warehouse target, and publishes when it succeeds. A run that succeeded, or is
    still running, is refused (exit 1).

    Examples: `millpond retry` (the latest run); `millpond retry 20261202T061500Z-1a2b3c`.
    """
    config = load(config_path)
    from millpond.runtime.context import RunContext

    probe = RunContext(config, "retry")
    run = _run_to_retry(probe, run_id)
    target = run.get("target")
    if target and target != config.target_name:  # the warehouse the retried run built
        config = load(config_path, target)
    _run(config, "cli", None, None, None, False, None, run["run_id"])


def _run_to_retry(ctx: RunContext, spec: str) -> dict[str, Any]:
    """The run `millpond retry` reruns; refused (1, or 2 for a run the ledger does not
    know) before anything is recorded. A run still open whose process died is closed
    `abandoned` first, as the next run's start would."""
    from millpond.metadata.ledger import LedgerUnavailableError
    from millpond.runtime.lifecycle import close_dead_runs
    from millpond.runtime.retry import RetryRefused, find_run

    try:
        try:
            return find_run(ctx, spec)
        except RetryRefused as exc:
            if exc.unknown or not close_dead_runs(ctx):
                raise
            return find_run(ctx, spec)
    except RetryRefused as exc:
        if exc.unknown and spec != "last":
            recent = ctx.ledger.read_dicts(
                "SELECT run_id FROM millpond.runs ORDER BY started_at DESC LIMIT 3", ()
            )
            names = ", ".join(r["run_id"] for r in recent) or "none"
            fail(f"cannot retry: {exc} (most recent: {names})", code=2)
        fail(f"cannot retry: {exc}", code=2 if exc.unknown else 1)
    except LedgerUnavailableError as exc:
        fail(f"cannot retry: the ledger cannot be read ({mask(str(exc))})", code=1)


def _run(
    config: MillpondConfig,
    trigger: str,
    run_id: str | None,
    select: list[str] | None,
    exclude: list[str] | None,
    full_refresh: bool,
    demo_scale: float | None,
    retry_of: str | None,
) -> None:
    """A whole run (`millpond run`, `millpond retry`), its summary and its exit code."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if demo_scale:
        _write_demo(config, demo_scale, only_if_empty=True, option="--demo-if-empty")
    quiet_prefect()
    from millpond.core.runid import new_run_id
    from millpond.runtime.context import RunContext
    from millpond.runtime.flow_runs import NewFlowRun
    from millpond.runtime.start import OrchestratorError, StartFailed, run_whole

    queued = run_id is not None
    run_id = run_id or new_run_id()
    ctx = RunContext.for_run(config, run_id, select, exclude, full_refresh)
    if retry_of is not None:
        _adopt(ctx, retry_of, queued)
    log_path = open_run_log(config.logs_dir, run_id)
    flow_run = NewFlowRun(config)
    started = time.perf_counter()
    try:
        with node_context(run_id):
            end = run_whole(ctx, trigger, _WithProgress(flow_run))
    except StartFailed:  # closed failed and logged already
        raise typer.Exit(2) from None
    except OrchestratorError:
        raise typer.Exit(1) from None
    finally:
        close_run_log(run_id)
    elapsed = _ledger_duration(ctx) or time.perf_counter() - started
    _print_run_summary(ctx, end, flow_run, log_path, elapsed)
    raise typer.Exit(0 if end.status == "success" else 1)


def _adopt(ctx: RunContext, retry_of: str, queued: bool) -> None:
    """Make the run the retry of `retry_of`. Refused, it exits 1 (2: no such run); a run
    queued already (`POST /runs/{id}/retry`) is closed failed with the reason first."""
    from millpond.metadata.ledger import LedgerUnavailableError
    from millpond.runtime.lifecycle import fail_start
    from millpond.runtime.retry import RetryRefused, adopt, find_run

    try:
        adopt(ctx, find_run(ctx, retry_of))
    except (RetryRefused, LedgerUnavailableError) as exc:
        message = f"cannot retry: {mask(str(exc))}"
        if queued:
            fail_start(ctx, message)
        fail(message, code=2 if getattr(exc, "unknown", False) else 1)


def _print_run_summary(
    ctx: RunContext, end: RunEnd, flow_run: NewFlowRun, log_path: Path, elapsed: float
) -> None:
    """The run's summary (millpond.cli.summary), then what the summary table cannot say: a
    publish left out by the selection, a damaged warehouse, ledger records buffered."""
    from millpond.cli.summary import RunFigures, print_summary
    from millpond.flows.prefect_api import api_url, ui_url
    from millpond.nodes.publish import PUBLISH_NODE, nothing_published
    from millpond.runtime.damage import warehouse_note
    from millpond.runtime.totals import rows_loaded

    config = ctx.config
    publish = ctx.outcomes.get(PUBLISH_NODE)
    flow_link = f"/runs/flow-run/{ctx.flow_run_id}" if ctx.flow_run_id else ""
    links = {
        "Prefect UI": (ui_url(api_url(config)) + " (no flow run: nothing new)")
        if end.settled
        else ui_url(flow_run.api or api_url(config)) + flow_link,
        "API": f"http://{config.serve.host}:{config.serve.port}/runs/{ctx.run_id} (just serve)",
        "log": str(log_path),
    }
    outcomes = list(ctx.outcomes.values())
    figures = RunFigures(
        run_id=ctx.run_id,
        status=end.status,
        elapsed_s=elapsed,
        rows=rows_loaded(ctx.graph, outcomes),
        outcomes=outcomes,
        order=[n.id for n in ctx.graph.nodes],
        links=links,
        snapshot=publish.detail.get("snapshot")
        if publish and publish.status == "success"
        else None,
        warnings=end.wiring,
        published=publish.detail.get("tables") or {}
        if publish and publish.status == "success"
        else {},
        unpublished=nothing_published(config, ctx.graph),
    )
    print_summary(out, figures)
    if ctx.retry_of is not None:
        rerun = len(ctx.graph.nodes) - len(ctx.keep)
        out.print(
            f"retry of run {ctx.retry_of}: {rerun} nodes rerun, {len(ctx.keep)} kept as it "
            "left them",
            highlight=False,
        )
    if ctx.selection.publish_note:
        out.print(ctx.selection.publish_note, highlight=False)
    damage = warehouse_note(ctx)  # a missing or unreadable warehouse: said again here
    if damage:
        out.print(damage, style="yellow", markup=False, highlight=False)
    if ctx.ledger.buffered:
        out.print(
            f"[yellow]metadata database unreachable: {ctx.ledger.buffered} ledger records "
            f"buffered in {ctx.ledger.buffer_path}, flushed on the next run[/]"
        )


def _load_queued(
    run_id: str, trigger: str, config_path: Path | None, target: str | None
) -> MillpondConfig:
    """The config of a run queued in the ledger already (`POST /runs`); one that cannot be
    read closes that run `failed` with the reason before exiting with 2."""
    from millpond.core.runid import is_run_id

    if not is_run_id(run_id):
        fail(f"--run-id: {run_id[:100]!r} is not a millpond run id")

    def record(error: str, env: dict[str, str]) -> None:
        from millpond.runtime.unstartable import record_unstartable

        record_unstartable(
            run_id, trigger, None, f"cannot read the config: {error}", config_path, env
        )

    return load(config_path, target, on_error=record)


def _ledger_duration(ctx: Any) -> float | None:
    """The run's duration as the ledger (and so the API) has it, in seconds; None when the
    ledger was unreachable (then the local clock around the run stands in)."""
    from millpond.metadata import queries
    from millpond.metadata.db import connect

    if ctx.ledger.buffered:
        return None
    try:
        with connect(ctx.ledger.url) as conn:
            run = queries.get_run(conn, ctx.run_id)
    except Exception:
        return None
    if run is None or run["duration_ms"] is None:
        return None
    return float(run["duration_ms"]) / 1000


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM exits like Ctrl-C, so exit hooks run (the embedded PostgreSQL stops cleanly)."""
    raise SystemExit(128 + signum)


class _WithProgress:
    """The flow run of `millpond run` with a progress bar while the graph runs (transient:
    the summary replaces it)."""

    def __init__(self, flow_run: NewFlowRun) -> None:
        self.flow_run = flow_run

    def connect(self) -> None:
        self.flow_run.connect()

    def run(self, hooks: FlowHooks) -> bool:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            TextColumn("{task.description:<40}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            bar = progress.add_task("starting", total=len(hooks.ctx.graph.nodes))
            # A failed attempt may still be retried; only final outcomes move the bar.
            hooks.ctx.on_node_done = lambda o: (
                progress.advance(bar) if o.status != "failed" else None
            )
            hooks.on_node_start = lambda n: progress.update(bar, description=n)
            return self.flow_run.run(hooks)


def _write_demo(
    config: MillpondConfig, scale: float, only_if_empty: bool, option: str = "--scale"
) -> None:
    """Generate demo exports into each TPC-H-shaped source's inbox, never over landed data.

    A source whose lake already holds partitions gets none (new demo files at another scale
    would be landed next to the old rows and break every uniqueness test), and neither does a
    source whose tables are not TPC-H tables (a team's real inbox).
    """
    from millpond.ingest.demo import TABLES, generate, inbox_has_files
    from millpond.ingest.lake import Lake

    if scale <= 0:
        raise typer.BadParameter(f"must be positive, got {scale}", param_hint=option)
    lake = Lake.from_config(config)
    for name, source in config.sources.items():
        if source.kind != "files" or source.path.startswith("s3://"):
            continue
        inbox = config.resolve(source.path)
        if not set(source.tables) <= set(TABLES):
            logger.info(f"{name}: not a TPC-H source; no demo data")
            continue
        if lake.exists(lake.path("raw", name)):
            if only_if_empty:
                continue
            console.print(
                f"[red]{name}[/]: the lake already holds data landed from this source; new demo "
                "files would be loaded next to it. Run `just clean` first.",
                highlight=False,
            )
            raise typer.Exit(2)
        if only_if_empty and inbox_has_files(inbox):
            continue
        try:
            generate(inbox, scale)
        except subprocess.CalledProcessError as exc:
            console.print(f"[red]tpchgen-cli failed[/]: {exc.stderr or exc}", highlight=False)
            raise typer.Exit(1) from None


@app.command("run-node")
def run_node_command(
    node_id: Annotated[str, typer.Argument(help="a node id from `millpond graph`")],
    run_id: Annotated[str, typer.Option("--run-id", help="the run this node belongs to")],
    attempt: Annotated[int, typer.Option(help="attempt number (retries count up)")] = 1,
    orchestrator: Annotated[str, typer.Option(help="recorded in the ledger")] = "airflow",
    config_path: ConfigOption = None,
    target: TargetOption = None,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="rebuild a dbt node even if unchanged")
    ] = False,
) -> None:
    """Run one node of one run (what each task of the generated Airflow DAG calls).

    Served by the stack's warm node worker when `millpond run-start` started one on this
    machine (millpond.cli.warm), else run in this process."""
    config = load(config_path, target)
    from millpond.cli.warm import client
    from millpond.core.graph import GraphError
    from millpond.metadata.records import RunStarted
    from millpond.nodes.dbt.runner import DbtError
    from millpond.runtime.context import RunContext
    from millpond.runtime.execute import NodeFailed, run_node
    from millpond.runtime.lifecycle import keep_alive

    open_run_log(config.logs_dir, run_id)
    if client.NOTE:
        with node_context(run_id, node_id):
            logger.debug(client.NOTE)
    sources_only = node_id.startswith(("extract.", "load."))
    ctx = RunContext(
        config,
        run_id,
        orchestrator=orchestrator,
        sources_only=sources_only,
        full_refresh=full_refresh,
    )
    try:
        # The trigger is the open task's to record (`millpond run-start`); every node task
        # keeps the run's lease alive while it works (millpond.runtime.lifecycle).
        ctx.ledger.write(RunStarted(run_id, orchestrator, None, config.target_name))
        keep_alive(ctx)
        outcome = run_node(ctx, node_id, attempt)
    except (GraphError, DbtError) as exc:
        console.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None
    except NodeFailed:
        raise typer.Exit(1) from None
    finally:
        close_run_log(run_id)
    out.print(f"{node_id}: {outcome.status} in {outcome.duration_ms} ms, rows={outcome.rows}")


@app.command()
def graph(
    config_path: ConfigOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="machine-readable nodes and edges")
    ] = False,
    mermaid: Annotated[bool, typer.Option("--mermaid", help="a Mermaid flowchart")] = False,
    target: TargetOption = None,
    select: SelectOption = None,
    exclude: ExcludeOption = None,
    dbt_vars: VarsOption = None,
) -> None:
    """Print the task graph (built from millpond.yml and the dbt manifest).

    With --select/--exclude, the part `millpond run` would run with them (and whether it
    publishes). dbt exposures (dashboards, apps) are shown after the nodes they read; they
    are not run. Examples: `millpond graph --mermaid`; `millpond graph --select +fct_orders`."""
    config = with_vars(load(config_path, target), dbt_vars)
    found: list[dict[str, Any]] = []
    built = _build_graph(config, select, exclude, with_exposures=found)
    if as_json:
        text = json.dumps({**json.loads(built.to_json()), "exposures": found}, indent=2)
    elif mermaid:
        text = built.to_mermaid() + _mermaid_exposures(built, found)
    else:
        text = built.to_text() + "".join(
            f"\nexposure {e['name']} ({e['type'] or '-'}, owner {e['owner'] or '-'})  "
            f"reads: {', '.join(e['upstream'])}"
            for e in found
        )
    sys.stdout.write(text + "\n")


def _mermaid_exposures(built: Any, found: list[dict[str, Any]]) -> str:
    """Exposures as rounded Mermaid nodes with dotted edges from what they read."""
    alias = {n.id: f"n{i}" for i, n in enumerate(built.nodes)}
    lines = []
    for i, exposure in enumerate(found):
        lines.append(f'  x{i}(["exposure: {exposure["name"]}"])')
        lines += [f"  {alias[up]} -.-> x{i}" for up in exposure["upstream"]]
    return "".join("\n" + line for line in lines)


@app.command()
def dag(
    config_path: ConfigOption = None,
    output: Annotated[Path, typer.Option(help="where to write the DAG file")] = Path(
        "airflow_compat/dags/millpond.py"
    ),
    check: Annotated[
        bool,
        typer.Option("--check", help="write nothing; exit 1 if the file differs (stale DAG)"),
    ] = False,
) -> None:
    """Write the graph as an Airflow DAG file (each task runs `millpond run-node`).

    Example: millpond dag --output ~/airflow/dags/millpond.py (see docs/deploy-airflow.md)"""
    config = load(config_path)
    from millpond.airflow_compat.render import render_dag

    built = _build_graph(config)
    millpond_bin = str(Path(sys.executable).with_name("millpond"))
    source = render_dag(built, config, millpond_bin, find_config(config_path), output)
    if check:
        if output.is_file() and output.read_text() == source:
            out.print(f"{output} is up to date")
            return
        console.print(f"[red]{output} is stale[/]: regenerate it with `just dag`", highlight=False)
        raise typer.Exit(1)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(source)
    out.print(f"wrote {output}: {len(built.nodes)} tasks, {len(built.edges())} edges")


@app.command("config")
def show_config(config_path: ConfigOption = None, target: TargetOption = None) -> None:
    """Print the effective config (file + ${VAR}s + MILLPOND_* overrides), secrets masked."""
    import yaml

    config = load(config_path, target)
    sys.stdout.write(mask(yaml.safe_dump(config.masked(), sort_keys=False)))


@app.command("demo-data")
def demo_data(
    scale: Annotated[float, typer.Option(help="TPC-H scale factor (0.1 = ~100 MB of CSV)")] = 0.1,
    config_path: ConfigOption = None,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="only into inboxes that are empty")
    ] = False,
) -> None:
    """Write TPC-H tables as ERP export files (CSV, nation/region as .xlsx) into each inbox.

    Refused for a source that already has landed data (run `just clean` first)."""
    _write_demo(load(config_path), scale, only_if_empty=if_empty)


@app.command()
def down(config_path: ConfigOption = None) -> None:
    """Stop what `millpond run`, `millpond ui` and `millpond run-start` started: the process
    serving the deployment, the local Prefect server, the warm node worker and embedded
    PostgreSQL. Works without the sources' secrets (${VAR}s only they read may be unset)."""
    config = load(config_path, needs=("state_dir", "prefect", "project"), command="down")
    from millpond.cli.warm.control import stop_worker
    from millpond.flows.deployment import stop_served
    from millpond.flows.server import stop_server
    from millpond.metadata.embedded import stop_embedded

    out.print("deployment: " + ("stopped" if stop_served(config) else "not served"))
    out.print("Prefect server: " + ("stopped" if stop_server(config) else "not running"))
    out.print("warm node worker: " + ("stopped" if stop_worker(config) else "not running"))
    out.print(
        "embedded PostgreSQL: "
        + ("stopped" if stop_embedded(config.state / "pg") else "not running")
    )


@app.command()
def serve(
    config_path: ConfigOption = None,
    host: Annotated[
        str | None,
        typer.Option(help="address to listen on (default: 127.0.0.1; serve.host with API keys)"),
    ] = None,
    port: Annotated[int | None, typer.Option(help="port (default: serve.port)")] = None,
    allow_no_keys: Annotated[
        bool,
        typer.Option(
            "--allow-no-keys",
            help="listen on a non-loopback --host without MILLPOND_API_KEYS "
            "(other machines still get 403)",
        ),
    ] = False,
) -> None:
    """Serve the API and dashboard with uvicorn (docs/serving.md).

    Listens on 127.0.0.1, on serve.host when MILLPOND_API_KEYS is set, or on --host.
    Without keys, a non-loopback address is refused unless --allow-no-keys."""
    from millpond.serve.launch import BindRefused, run

    load(config_path)
    try:
        run(config_path, host, port, allow_no_keys)
    except BindRefused as exc:
        fail(str(exc))


# Commands with a module of their own, one line each.
app.command()(status)
app.command()(logs)
app.command()(docs)
app.command()(doctor)
app.command()(check)
app.command("check-freshness")(check_freshness)
app.command()(query)
app.command()(init)
app.add_typer(lake_app, name="lake")
app.command("backfill")(backfill)
app.command("run-start")(run_start)
app.command("run-finish")(run_finish)
app.command()(ui)
app.command("serve-deployment", hidden=True)(serve_deployment)

if __name__ == "__main__":
    app()
