"""Where millpond.yml's tables and the dbt project's sources do not meet, said before a run.

A dbt source named after a millpond source (or reading the raw schema) that no configured
table loads is built on whatever raw data was loaded before: a table renamed or misspelt in
millpond.yml (`tables: [orderz]`) would otherwise give a green run over old data. Such a
source is a warning in the log and the run summary, or refuses the run under
`dbt.on_unloaded_source: error`. A configured table no dbt source reads, beside tables of the
same source that are read, is most likely such a typo too: a warning. A source none of whose
tables dbt reads is a land-only source, which is fine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from millpond.core.graph import Graph, providers


@dataclass
class Wiring:
    unloaded: list[str] = field(default_factory=list)  # dbt sources no table loads
    unread: list[str] = field(default_factory=list)  # tables no dbt source reads

    def messages(self) -> list[str]:
        return self.unloaded + self.unread


def check_wiring(graph: Graph, manifest: dict[str, Any], config: Any) -> Wiring:
    """The dbt sources (read by a model) that no load node provides, and the tables whose
    load no dbt node waits for while another table of the same source is read."""
    found = Wiring()
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
        hint = (
            f"add {table!r} to sources.{name}.tables"
            if name in config.sources
            else "name the dbt source after a millpond source and table"
        )
        found.unloaded.append(
            f"dbt source {name}.{table} ({source.get('schema')}.{identifier}) is loaded by no "
            f"table of millpond.yml ({hint}): {', '.join(readers) or 'its readers'} read raw "
            "data loaded before, or none"
        )
    waited = {up for n in graph.nodes if n.kind == "dbt" for up in n.upstream}
    loads = [n for n in graph.nodes if n.kind == "load"]
    sources_read = {n.params.source for n in loads if n.id in waited}
    for node in loads:
        if node.id not in waited and node.params.source in sources_read:
            found.unread.append(
                f"table {node.params.source}.{node.params.table} is read by no dbt source "
                f"(dbt sources of {node.params.source!r} read other tables): misspelt in "
                "millpond.yml or in the dbt project?"
            )
    return found
