"""What a dbt node's relation is built from, as one hash (see millpond.nodes.fingerprints).

A node's fingerprint covers its model's raw code, file checksum, config and the macros it
calls (so a changed macro changes it), the ephemeral models inlined into it, the tests the
node runs, the project's vars and the target, its parent nodes' fingerprints, and for each
dbt source it reads the raw partitions loaded into the warehouse (id and manifest hash: on
DuckDB the raw view is recreated over exactly those files). A source no load node of the
graph provides, or any input the ledger cannot vouch for, gives None: always rebuilt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from millpond.core.graph import Graph, Node, providers
from millpond.nodes.dbt.graph import DbtParams, source_provider
from millpond.nodes.fingerprints import digest
from millpond.nodes.source_table import SourceTable

# Fields of a manifest resource that change what it builds (descriptions and docs do not).
_BUILD_FIELDS = ("resource_type", "raw_code", "checksum", "config", "database", "schema", "alias")
_UNIT_TEST_FIELDS = ("given", "expect", "overrides", "model")


class DbtFingerprints:
    """Fingerprints of a run's dbt nodes, computed once each, parents first."""

    def __init__(
        self,
        manifest: dict[str, Any],
        graph: Graph,
        partitions: Callable[[str, str], list[Any]],
        context: dict[str, Any],
        pinned: dict[str, str | None] | None = None,
    ) -> None:
        self.resources = manifest.get("nodes", {})
        self.sources = manifest.get("sources", {})
        self.macros = manifest.get("macros", {})
        self.graph = graph
        self.provided = providers(graph.nodes)
        self.partitions = partitions
        self.context = context
        self.unit_tests = manifest.get("unit_tests", {})
        self.tests_by_name = {
            r["name"]: uid for uid, r in self.resources.items() if r["resource_type"] == "test"
        }
        self.tests_by_name.update({r["name"]: uid for uid, r in self.unit_tests.items()})
        # Nodes a retry keeps: the fingerprint of what the warehouse holds, not of the code
        # now, so their children's fingerprints say what they are built from.
        self._memo: dict[str, str | None] = dict(pinned or {})
        self._lock = threading.RLock()

    def of(self, node: Node) -> str | None:
        with self._lock:
            if node.id not in self._memo:
                try:
                    self._memo[node.id] = self._compute(node)
                except Exception:  # the ledger went away, an odd manifest: rebuild
                    self._memo[node.id] = None
            return self._memo[node.id]

    def _compute(self, node: Node) -> str | None:
        params: DbtParams = node.params
        uids = [params.unique_id, *(self.tests_by_name.get(t, t) for t in params.tests)]
        code = [self._resource(uid, set()) for uid in uids]
        sources: dict[str, Any] = {}
        for uid in uids:
            for source_uid in self._sources_read(uid, set()):
                provider = source_provider(self.sources[source_uid], self.provided)
                if provider is None:
                    return None  # data millpond does not load: cannot tell if it changed
                sources[source_uid] = self._source_state(provider)
                if sources[source_uid] is None:
                    return None
        parents: dict[str, str | None] = {}
        for up in node.upstream:
            upstream = self.graph.node(up)
            if isinstance(upstream.params, DbtParams):
                parents[up] = self.of(upstream)
                if parents[up] is None:
                    return None
            elif not isinstance(upstream.params, SourceTable):
                return None  # a kind whose output has no fingerprint
        return digest([code, sources, parents, self.context])

    def _source_state(self, provider: str) -> Any:
        params = self.graph.node(provider).params
        if not isinstance(params, SourceTable):
            return None
        return [provider, self.partitions(params.source, params.table)]

    def _resource(self, uid: str, seen: set[str]) -> Any:
        """A resource's build-relevant fields, its macros and inlined ephemeral models."""
        resource = self.resources.get(uid) or self.unit_tests.get(uid, {})
        depends = resource.get("depends_on", {})
        ephemeral = [
            self._resource(dep, seen)
            for dep in depends.get("nodes", [])
            if dep in self.resources
            and self.resources[dep].get("config", {}).get("materialized") == "ephemeral"
        ]
        fields = {f: resource.get(f) for f in _BUILD_FIELDS}
        if uid in self.unit_tests:  # its rows in and out are what it tests
            fields.update({f: resource.get(f) for f in _UNIT_TEST_FIELDS})
        return {
            "fields": fields,
            "test": resource.get("test_metadata"),
            "macros": self._macros(depends.get("macros", []), seen),
            "ephemeral": ephemeral,
        }

    def _macros(self, names: list[str], seen: set[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name in names:
            if name in seen:
                continue
            seen.add(name)
            macro = self.macros.get(name, {})
            found[name] = macro.get("macro_sql")
            found.update(self._macros(macro.get("depends_on", {}).get("macros", []), seen))
        return found

    def _sources_read(self, uid: str, seen: set[str]) -> set[str]:
        """dbt sources a resource reads, looking through ephemeral models."""
        found: set[str] = set()
        for dep in self.resources.get(uid, {}).get("depends_on", {}).get("nodes", []):
            if dep in seen:
                continue
            seen.add(dep)
            if dep in self.sources:
                found.add(dep)
            elif self.resources.get(dep, {}).get("config", {}).get("materialized") == "ephemeral":
                found |= self._sources_read(dep, seen)
        return found
