"""Where millpond.yml's tables and the dbt project's sources do not meet, said as a run starts.

A dbt source named after a millpond source (or reading the raw schema) that no configured
table loads is built on whatever raw data was loaded before: a table renamed or misspelt in
millpond.yml (`tables: [orderz]`) would otherwise give a green run over old data. Such a
source is a warning in the log and the run summary, or refuses the run under
`dbt.on_unloaded_source: error`. A configured table no dbt source reads is named too when its
source also has such an unloaded dbt source (the other half of the same typo); otherwise it is
a table landed for other readers, which is fine.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from millpond.core.config import DEFAULT_DBT_DIR, MillpondConfig
from millpond.core.graph import Graph, providers
from millpond.core.logs import logger
from millpond.core.registry import BuildScope
from millpond.nodes.dbt.graph import DBT_KIND
from millpond.nodes.load import LOAD_KIND


@dataclass
class Wiring:
    unloaded: list[str] = field(default_factory=list)  # dbt sources no table loads
    unread: list[str] = field(default_factory=list)  # tables no dbt source reads
    unread_tables: set[tuple[str, str]] = field(default_factory=set)  # (source, table) of those

    def messages(self) -> list[str]:
        return self.unloaded + self.unread


def warn_about_wiring(scope: BuildScope, graph: Graph) -> list[str]:
    """What the run start says (millpond.runtime.start): each message logged as a warning and
    returned for the summary; under `dbt.on_unloaded_source: error` a dbt source no table
    loads refuses the run (ValueError)."""
    from millpond.nodes.dbt import project

    if not scope.config.has_dbt:
        notes = ingest_only_notes(scope.config)
        for message in notes:
            logger.warning(message)
        return notes
    if not any(n.kind == DBT_KIND for n in graph.nodes):
        return []
    found = check_wiring(graph, project(scope).manifest_json or {}, scope.config)
    if found.unloaded and scope.config.dbt_settings.on_unloaded_source == "error":
        raise ValueError(
            "; ".join(found.unloaded) + " (dbt.on_unloaded_source: error in millpond.yml)"
        )
    for message in found.messages():
        logger.warning(message)
    return found.messages()


def ingest_only_notes(config: MillpondConfig) -> list[str]:
    """A project without a dbt section runs ingest-only; a dbt project in the default folder
    beside millpond.yml then goes unbuilt, which is said (older millpond versions built
    `transform/` without a `dbt` section)."""
    default = config.resolve(DEFAULT_DBT_DIR) / "dbt_project.yml"
    if not default.is_file():
        return []
    return [
        f"millpond.yml has no dbt section, so this run is ingest-only and {default} is not "
        f"built: add `dbt: {{project_dir: {DEFAULT_DBT_DIR}}}` to build it"
    ]


def check_wiring(graph: Graph, manifest: dict[str, Any], config: MillpondConfig) -> Wiring:
    """The dbt sources (read by a model) that no load node provides, and the tables whose
    load no dbt node waits for while another table of the same source is read."""
    found = Wiring()
    unloaded: dict[str, list[str]] = {}  # millpond source -> its tables dbt reads, unloaded
    provided = providers(graph.nodes)
    raw_schema = config.target_config.raw_schema
    resources = manifest.get("nodes", {})
    read = {dep for r in resources.values() for dep in r.get("depends_on", {}).get("nodes", [])}
    for uid, source in sorted(manifest.get("sources", {}).items()):
        name, table = source.get("source_name"), source.get("name")
        identifier = source.get("identifier") or table
        relation = f"relation:{source.get('schema')}.{identifier}"
        if uid not in read or (name not in config.sources and source.get("schema") != raw_schema):
            continue
        if (
            f"source:{name}.{table}" in provided
            or relation in provided
            or relation.removesuffix("__latest") in provided
        ):
            continue
        readers = sorted(
            r["name"]
            for r in resources.values()
            if uid in r.get("depends_on", {}).get("nodes", []) and r["resource_type"] != "test"
        )
        if name in config.sources:
            configured = config.sources[name].table_names()
            near = difflib.get_close_matches(str(table), configured, n=1, cutoff=0.6)
            hint = f"add {table!r} to sources.{name}.tables" + (
                f", or correct {near[0]!r} there, the nearest name" if near else ""
            )
        else:
            hint = "name the dbt source after a millpond source and table"
        unloaded.setdefault(str(name), []).append(str(table))
        found.unloaded.append(
            f"dbt source {name}.{table} ({source.get('schema')}.{identifier}) is loaded by no "
            f"table of millpond.yml ({hint}); the models reading it "
            f"({', '.join(readers) or 'none listed'}) are built on raw data loaded before, if any"
        )
    waited = {up for n in graph.nodes if n.kind == DBT_KIND for up in n.upstream}
    for node in graph.nodes:
        params = node.params
        if node.kind != LOAD_KIND or node.id in waited or params.source not in unloaded:
            continue
        near = difflib.get_close_matches(params.table, unloaded[params.source], n=1, cutoff=0.6)
        meant = f"; did you mean {near[0]!r}?" if near else ""
        found.unread_tables.add((params.source, params.table))
        found.unread.append(
            f"table {params.source}.{params.table} of millpond.yml is read by no dbt source "
            f"while dbt sources of {params.source!r} read tables it does not load{meant}"
        )
    return found
