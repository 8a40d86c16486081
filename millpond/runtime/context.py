"""A run's context: the config, the run id and the run's resources, opened on first use.

It is what node kinds see as their `NodeScope` (millpond.core.registry): the lake, the target,
the ledger and a per-run cache of other resources (the parsed dbt project).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from millpond.core.config import MillpondConfig
from millpond.core.graph import Graph, build_graph
from millpond.core.logs import logger
from millpond.core.masking import mask
from millpond.core.registry import TARGETS, Target
from millpond.ingest.lake import Lake
from millpond.metadata.buffer import buffer_path, ledger_identity, stranded_buffers
from millpond.metadata.db import migrate, resolve_url
from millpond.metadata.ledger import Ledger

R = TypeVar("R")  # a run resource's type


@dataclass
class RunContext:
    """Everything a node of one run needs; cheap to build, parts opened on first use."""

    config: MillpondConfig
    run_id: str
    orchestrator: str = "prefect"
    flow_run_id: str | None = None
    # A single extract or load node (Airflow) builds the graph without parsing dbt.
    sources_only: bool = False
    # The part of the graph to run, in dbt's selector syntax (millpond.runtime.selection).
    select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    # dbt's --full-refresh for the dbt nodes, and every model rebuilt whatever its fingerprint;
    # raw is the lake and is never re-landed or dropped.
    full_refresh: bool = False
    # Nodes run as threads of this process (the Prefect flow): ready dbt nodes share a build.
    batch: bool = False
    outcomes: dict[str, Any] = field(default_factory=dict)
    running: set[str] = field(default_factory=set)  # node ids being run now
    on_node_done: Callable[[Any], None] | None = None
    closed: str | None = None  # the status the run was closed with in the ledger, once it is
    _resources: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def for_run(
        cls,
        config: MillpondConfig,
        run_id: str,
        select: list[str] | None = None,
        exclude: list[str] | None = None,
        full_refresh: bool = False,
    ) -> RunContext:
        """The context of a whole run under Prefect, from `millpond run` or the deployment."""
        return cls(
            config,
            run_id,
            orchestrator="prefect",
            select=tuple(select or ()),
            exclude=tuple(exclude or ()),
            full_refresh=full_refresh,
        )

    @cached_property
    def ledger(self) -> Ledger:
        # An embedded server stays up between runs (like the Prefect server) until `just down`:
        # stopping and restarting it per command is slower and races with the next command.
        url = resolve_url(self.config.metadata.url, self.config.state, keep_running=True)
        try:
            migrate(url)
        except Exception as exc:  # the run goes on; the ledger buffers locally
            logger.warning(f"metadata database unavailable, buffering records: {mask(str(exc))}")
        ledger = Ledger(url, buffer_path(self.config.state, url))
        ledger.flush_buffer()
        for path, meant_for in stranded_buffers(self.config.state, url):
            logger.warning(stranded_message(path, meant_for, url))
        return ledger

    @cached_property
    def lake(self) -> Lake:
        return Lake.from_config(self.config)

    @cached_property
    def target(self) -> Target:
        kind = TARGETS.get(self.config.target_name)
        return kind.create(self.config.target_config, self.config)

    def resource(self, key: str, factory: Callable[[], R]) -> R:
        with self._lock:
            if key not in self._resources:
                self._resources[key] = factory()
            return self._resources[key]

    def resource_keys(self) -> set[str]:
        with self._lock:
            return set(self._resources)

    def drop_resources(self, keep: set[str]) -> None:
        """Forget (and close) the resources not in `keep`: what a look ahead computed from
        data that the run is about to change."""
        with self._lock:
            dropped = [self._resources.pop(k) for k in list(self._resources) if k not in keep]
        _close_all(dropped)

    def close(self) -> None:
        """Let the run's resources finish what they still do in the background (a shared
        dbt build) before the run is closed and the process exits."""
        with self._lock:
            resources = list(self._resources.values())
        _close_all(resources)

    @cached_property
    def graph(self) -> Graph:
        """The graph this run runs: the whole graph, or the part `select`/`exclude` keep;
        for a single extract or load node (`sources_only`), the part that needs no dbt
        parse, which is what makes those Airflow tasks start fast."""
        return self.selection.graph

    @cached_property
    def selection(self) -> Any:
        """The selected part of the graph and why publish is left out of it, if it is
        (a `millpond.runtime.selection.Selection`); raises SelectionError for a bad one."""
        from millpond.runtime.selection import Selection, select_graph

        whole = build_graph(self, with_project=not self.sources_only)
        if not (self.select or self.exclude):
            return Selection(whole)
        return select_graph(self, whole, self.select, self.exclude)


def stranded_message(path: Path, meant_for: str | None, url: str) -> str:
    """What to tell a user about ledger records buffered for a ledger other than this run's."""
    if meant_for is None:
        return (
            f"ledger records in {path} were buffered by an older millpond that did not note "
            f"which ledger they were for: kept, not replayed into {ledger_identity(url)}. If "
            f"they belong there, move the file to {buffer_path(path.parent, url)}; if not, "
            "point metadata.url at their ledger for one run, or delete the file"
        )
    return (
        f"ledger records buffered for another ledger ({mask(meant_for)}) are kept in "
        f"{path.parent} ({path.name}), not replayed into this run's ledger "
        f"({ledger_identity(url)}): they are replayed when metadata.url points at their "
        "ledger again"
    )


def _close_all(resources: list[Any]) -> None:
    """Close what has a `close`, the latest first."""
    for resource in reversed(resources):
        closer = getattr(resource, "close", None)
        if callable(closer):
            closer()
