"""Nothing changed, nothing rebuilt: a run's node fingerprints against the published run's.

A node kind that can tell what its output was built from (dbt: a model's code, config, parents
and the raw partitions it reads) hashes that into a fingerprint. The node is `unchanged`, and
not run, when its fingerprint equals both the one of the currently published run (readers have
exactly this) and the node's latest record (the warehouse holds exactly this: a later run that
failed may have rebuilt it since). Publish is `unchanged` when every such node was.

Any doubt means a rebuild: no ledger, records still buffered, an unknown input (fingerprint
None), `full_refresh`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from millpond.core.logs import logger
from millpond.metadata import reads

# The publish node kind's registered name (`Node.kind` of the publish node): a run is published
# once a node of this kind succeeded in it. Spelled here, not in millpond.nodes.publish, because
# publish builds on these fingerprints.
PUBLISH_KIND = "publish"


def digest(value: Any) -> str:
    """A stable hash of a JSON-able value (sorted keys; odd types as strings)."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class RunFingerprints:
    """This run's fingerprints and what the ledger says the warehouse and readers hold."""

    def __init__(self, ledger: Any, full_refresh: bool) -> None:
        self.ledger = ledger
        self.full_refresh = full_refresh
        self.current: dict[str, str | None] = {}  # node_id -> fingerprint, this run
        self.unchanged: set[str] = set()
        self.kinds: set[str] = set()  # node kinds that took part
        self._lock = threading.Lock()
        self._known: tuple[dict[str, str], dict[str, Any]] | None = None

    def _records(self) -> tuple[dict[str, str], dict[str, Any]]:
        with self._lock:
            if self._known is None:
                try:
                    self._known = reads.fingerprints(self.ledger, PUBLISH_KIND)
                except Exception as exc:
                    logger.info(f"no fingerprints from the ledger ({exc}): rebuilding")
                    self._known = ({}, {})
            return self._known

    def check(self, node_id: str, kind: str, fingerprint: str | None) -> tuple[bool, int | None]:
        """Note the node's fingerprint; (True, rows it had) if it need not run."""
        with self._lock:
            self.current[node_id] = fingerprint
            self.kinds.add(kind)
        if fingerprint is None or self.full_refresh:
            return False, None
        published, latest = self._records()
        last = latest.get(node_id)
        if published.get(node_id) != fingerprint or last is None or last[0] != fingerprint:
            return False, None
        with self._lock:
            self.unchanged.add(node_id)
        return True, last[1]

    def all_unchanged(self, node_ids: list[str]) -> bool:
        """Every one of these nodes ran in this run and was found unchanged."""
        return bool(node_ids) and all(n in self.unchanged for n in node_ids)


def run_fingerprints(scope: Any) -> RunFingerprints:
    """The run's one RunFingerprints (a per-run resource of the scope)."""
    return scope.resource(
        "fingerprints",
        lambda: RunFingerprints(scope.ledger, bool(getattr(scope, "full_refresh", False))),
    )
