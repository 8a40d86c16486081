"""`millpond check`: everything a run needs, looked at briefly, with nothing written.

A run that fails ten minutes in on a misspelt table or a database that does not answer costs
those ten minutes; `check` finds such things in seconds, before any run:
- millpond.yml is valid (loading it, in the CLI, says so or names the key);
- each source answers its kind's `probe()` (millpond.core.registry.Probe: the inbox exists,
  the database answers `select 1`, the API's base URL answers), and so does the warehouse
  target; a kind without a `probe` is reported as not probed, never as a problem;
- the lake: a local folder that exists or can be created, an S3 bucket that answers;
- the ledger: a postgresql:// URL answers `select 1`; `embedded` is reported running or not
  and is never started (starting it writes its data folder, and `millpond run` starts it
  anyway);
- the dbt project parses, the graph builds, and millpond.yml's tables and the dbt sources
  meet (millpond.runtime.wiring, with the nearest name of a misspelt table); a project
  without a dbt section (ingest-only) has no parse step, only its graph built.

Writing nothing: the dbt parse and its generated profile go to a temporary state folder
(removed afterwards; the machine-wide parse cache is neither read nor written, so the parse
is a fresh one and takes dbt's few seconds), no lake folder, lock file, ledger row or
warehouse file is created, and probes only connect, list and ask.
"""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from millpond.core.config import MillpondConfig
from millpond.core.graph import Graph, GraphError
from millpond.core.masking import mask, mask_url
from millpond.core.registry import SOURCES, TARGETS, Probe, RegistryError

DEFAULT_TIMEOUT_S = 5.0


@dataclass
class Checked:
    """One thing looked at: its area (source, warehouse, lake, ledger, dbt), its name, what
    was seen and what is wrong (each problem naming its key or file and what to do)."""

    area: str
    name: str
    detail: str = ""
    problems: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    """Everything looked at, the graph a run would run and what each extract would read."""

    checked: list[Checked] = field(default_factory=list)
    graph: Graph | None = None
    reads: dict[str, str] = field(default_factory=dict)  # extract node id -> what it reads
    notes: list[str] = field(default_factory=list)  # worth knowing, not problems

    @property
    def problems(self) -> list[tuple[Checked, str]]:
        return [(c, p) for c in self.checked for p in c.problems]


def check(config: MillpondConfig, timeout: float = DEFAULT_TIMEOUT_S) -> CheckReport:
    """Look at everything; write nothing."""
    report = CheckReport()
    report.checked.append(_check_lake(config))
    report.checked.append(_check_ledger(config, timeout))
    report.checked.append(_check_target(config, timeout))
    source_reads: dict[tuple[str, str], str] = {}
    for name in sorted(config.sources):
        checked, probe = _check_source(config, name, timeout)
        report.checked.append(checked)
        for table in config.sources[name].table_names():
            if checked.problems:
                source_reads[(name, table)] = f"unknown: see the problem of sources.{name}"
            elif probe is None:
                source_reads[(name, table)] = "unknown: its source kind has no probe"
            else:
                source_reads[(name, table)] = probe.reads.get(table, "")
    _check_project(config, report, source_reads)
    return report


# --- sources and the target: each kind's own probe ------------------------------------------


def _check_source(
    config: MillpondConfig, name: str, timeout: float
) -> tuple[Checked, Probe | None]:
    source_config = config.sources[name]
    checked = Checked("source", f"{name} ({source_config.kind})")
    try:
        source = SOURCES.get(source_config.kind).create(name, source_config, config)
    except Exception as exc:  # the factory already talks to a server (an S3 inbox)
        checked.problems.append(f"sources.{name}: cannot be opened: {mask(str(exc))}")
        return checked, None
    return checked, _probe(source, checked, timeout)


def _check_target(config: MillpondConfig, timeout: float) -> Checked:
    checked = Checked("warehouse", config.target_name)
    try:
        target = TARGETS.get(config.target_name).create(config.target_config, config)
    except Exception as exc:
        checked.problems.append(f"warehouse.{config.target_name}: {mask(str(exc))}")
        return checked
    _probe(target, checked, timeout)
    return checked


def _probe(thing: Any, checked: Checked, timeout: float) -> Probe | None:
    """The kind's probe into `checked`; a kind without one is said, not failed."""
    probe = getattr(thing, "probe", None)
    if probe is None:
        checked.detail = "not probed (this kind has no probe)"
        return None
    try:
        found: Probe = probe(timeout)
    except Exception as exc:  # a probe that raises is a problem of its own, named
        checked.problems.append(f"{checked.name}: probe failed: {mask(str(exc))}")
        return None
    checked.detail = found.detail
    checked.problems.extend(found.problems)
    return found


# --- the lake and the ledger ------------------------------------------------------------------


def _check_lake(config: MillpondConfig) -> Checked:
    url = config.lake_url
    checked = Checked("lake", mask_url(config.lake.url))
    if url.startswith("file://"):
        folder = Path(url.removeprefix("file://"))
        if folder.is_dir():
            checked.detail = f"{folder}: exists"
            return checked
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
            checked.problems.append(
                f"lake.url: {folder} cannot be created ({existing} is not a writable folder); "
                "choose a folder millpond may write to"
            )
        else:
            checked.detail = f"{folder}: not created yet (the first run creates it)"
        return checked
    from millpond.ingest import s3
    from millpond.ingest.lake import Lake

    try:
        Lake.from_config(config)  # an S3 lake asks its server for the bucket; writes nothing
    except (s3.S3Error, OSError, ValueError) as exc:
        checked.problems.append(mask(str(exc)))
        return checked
    checked.detail = "bucket answers"
    return checked


def _check_ledger(config: MillpondConfig, timeout: float) -> Checked:
    """`embedded` is reported, never started; a URL must answer `select 1`."""
    url = config.metadata.url
    checked = Checked("ledger", mask_url(url))
    if url.strip().lower() == "embedded":
        from millpond.metadata.embedded import is_running

        data = config.state / "pg"
        if not data.is_dir():
            checked.detail = (
                f"embedded PostgreSQL not created yet (the first run starts it in {data})"
            )
        elif is_running(data):
            checked.detail = f"embedded PostgreSQL running ({data})"
        else:
            checked.detail = (
                f"embedded PostgreSQL not running ({data}); the next run starts it, "
                "`millpond check` does not"
            )
        return checked
    from millpond.metadata.db import connect

    try:
        with connect(url, connect_timeout=max(1, int(timeout))) as conn:
            conn.execute("select 1")
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        checked.problems.append(
            f"metadata.url: cannot connect to {mask_url(url)} ({mask(first)}); check the host, "
            "port, credentials and database (runs would buffer their ledger records meanwhile)"
        )
        return checked
    checked.detail = "answers"
    return checked


# --- the dbt project and the graph -----------------------------------------------------------


def _check_project(
    config: MillpondConfig, report: CheckReport, source_reads: dict[tuple[str, str], str]
) -> None:
    """Parse the dbt project and build the graph with the state folder in a temporary one, so
    dbt's target/, logs and the generated profile land there and are removed afterwards."""
    from millpond.nodes.dbt import project
    from millpond.nodes.dbt.graph import DBT_KIND
    from millpond.nodes.dbt.manifest_cache import cache_dir_set_to
    from millpond.nodes.dbt.runner import DbtError
    from millpond.nodes.extract import EXTRACT_KIND
    from millpond.nodes.load import LOAD_KIND
    from millpond.runtime.context import RunContext
    from millpond.runtime.wiring import check_wiring, ingest_only_notes

    name = str(config.dbt_project_dir) if config.has_dbt else "none (no dbt section)"
    checked = Checked("dbt", name)
    report.checked.append(checked)
    scratch = Path(tempfile.mkdtemp(prefix="millpond-check-"))
    # The machine-wide parse cache (millpond.nodes.dbt.manifest_cache) is not written either:
    # the parse is a fresh one, in the scratch folder.
    try:
        aside = config.model_copy(update={"state_dir": scratch})
        ctx = RunContext(aside, "check", orchestrator="check")
        try:
            with cache_dir_set_to(scratch / "cache"):
                graph = ctx.graph
                manifest = (project(ctx).manifest_json or {}) if config.has_dbt else {}
        except (DbtError, GraphError, RegistryError) as exc:
            checked.problems.append(f"{_under_project(mask(str(exc)), scratch)}; fix the project")
            return
        except Exception as exc:  # a target whose profile cannot be written, a bad selection
            checked.problems.append(f"cannot build the graph: {mask(str(exc))}")
            return
        finally:
            ctx.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report.graph = graph
    models = sum(1 for n in graph.nodes if n.kind == DBT_KIND)
    checked.detail = f"parses: {models} dbt node(s), {len(graph.nodes)} node(s) in the graph"
    if not config.has_dbt:
        published = "the raw relations" if config.publishes_raw else "nothing (publish.raw: false)"
        checked.detail = (
            f"ingest-only: {len(graph.nodes)} node(s) in the graph (extract, load, publish), "
            f"publishes {published}"
        )
        report.notes.extend(ingest_only_notes(config))
    for node in graph.nodes:
        if node.kind == EXTRACT_KIND:
            key = (node.params.source, node.params.table)
            report.reads[node.id] = source_reads.get(key, "not probed")
    if not models:
        return
    wiring = check_wiring(graph, manifest, config)
    checked.problems.extend(wiring.messages())
    # A table no dbt source reads, whose source has no unloaded dbt source (so not a typo
    # for certain): landed for other readers, perhaps; said with the nearest dbt source.
    waited = {up for n in graph.nodes if n.kind == DBT_KIND for up in n.upstream}
    sources = [s for s in manifest.get("sources", {}).values()]
    for node in graph.nodes:
        if node.kind != LOAD_KIND or node.id in waited:
            continue
        source, table = node.params.source, node.params.table
        if (source, table) in wiring.unread_tables:
            continue
        names = [f"{s.get('source_name')}.{s.get('name')}" for s in sources]
        near = difflib.get_close_matches(f"{source}.{table}", names, n=1, cutoff=0.6)
        report.notes.append(
            f"sources.{source}.tables: {table!r} is read by no dbt model (landed for other "
            "readers?)" + (f"; the nearest dbt source is {near[0]!r}" if near else "")
        )


def _under_project(message: str, scratch: Path) -> str:
    """dbt's message without the temporary state folder's path in it."""
    return message.replace(str(scratch), "<state_dir>")
