"""Kinds as seams: sources, targets and node kinds registered by their `kind` name.

The kernel knows no kind by name. A source kind, a warehouse target or a node kind is one
module that builds a `SourceKind`, `TargetKind` or `NodeKind` and one line in the composition
root (`millpond.runtime.kinds`, reached through the `millpond.kinds` entry point) that
registers it, the way dlt registers destinations and
SQLMesh its engine adapters. The config's discriminated unions, the graph and the execute path
are built from these registries, so adding a kind never means an if/else elsewhere.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import IntEnum
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    import pyarrow as pa

    from millpond.core.config import MillpondConfig
    from millpond.core.graph import Node

K = TypeVar("K")
R = TypeVar("R")  # a run resource's type


class RegistryError(Exception):
    """A kind registered twice, or asked for and never registered."""


ENTRY_POINT_GROUP = "millpond.kinds"
_plugins_loaded = False
_plugins_lock = threading.RLock()


def load_plugins() -> None:
    """Call every `millpond.kinds` entry point once per process.

    millpond's own kinds are registered this way too (pyproject.toml points the group at
    millpond.runtime.kinds), so every entry point (CLI, API, a notebook) sees the same kinds
    and a team's package can add its own without touching millpond."""
    global _plugins_loaded
    with _plugins_lock:
        if _plugins_loaded:
            return
        _plugins_loaded = True  # set first: a registration may use the registries itself
        entries = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        try:
            if not entries:
                raise RegistryError("no `millpond.kinds` entry point is installed")
            for entry in entries:
                entry.load()()
        except Exception as exc:
            _plugins_loaded = False
            raise RegistryError(
                f"cannot register millpond's kinds ({exc}); reinstall millpond "
                "(`just install`, or `pip install -e .` in its folder)"
            ) from exc


class Registry(Generic[K]):
    """Kinds of one family by name. Without `order`, in registration order; with it, by the
    order each kind declares (`order(kind)`, lowest first), registration order among equals,
    so the order never depends on which entry point happened to load first."""

    def __init__(self, family: str, order: Callable[[K], int] | None = None) -> None:
        self.family = family
        self._order = order
        self._kinds: dict[str, K] = {}
        self._ordered: dict[str, K] | None = None

    @property
    def kinds(self) -> Mapping[str, K]:
        """Read-only: a kind joins the family through `register` only."""
        load_plugins()
        if self._ordered is None:
            order = self._order
            items = list(self._kinds.items())
            if order is not None:
                items.sort(key=lambda item: order(item[1]))  # stable: registration among equals
            self._ordered = dict(items)
        return MappingProxyType(self._ordered)

    def register(self, name: str, kind: K) -> K:
        if name in self._kinds and self._kinds[name] is not kind:
            raise RegistryError(f"{self.family} kind {name!r} is registered twice")
        self._kinds[name] = kind
        self._ordered = None
        return kind

    def unregister(self, name: str) -> None:
        """Take a kind out again (a test's own kind, registered for that test only)."""
        self._kinds.pop(name, None)
        self._ordered = None

    def get(self, name: str) -> K:
        try:
            return self.kinds[name]
        except KeyError:
            known = ", ".join(self.kinds) or "none"
            raise RegistryError(f"unknown {self.family} kind {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        return list(self.kinds)

    def items(self) -> list[tuple[str, K]]:
        return list(self.kinds.items())

    def rank(self, name: str) -> int:
        """The kind's place in the family's order, used to break ties so renderings are
        stable; an unknown name comes last."""
        names = self.names()
        return names.index(name) if name in names else len(names)

    def __contains__(self, name: object) -> bool:
        return name in self.kinds


# ---------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class ReadReport:
    """What an incremental read found, told by its source once the batches were read, so a
    read is known by what it returned (not only by where it started) and a cursor that stops
    moving while records keep coming is noticed."""

    # What the read returned (a hash of its records, or of its range and row count): a read
    # identical to one already in a partition is not landed again.
    identity: str
    returned: int = 0  # records the source sent
    # Of those, records the source did not recognise as landed already (an inclusive API's
    # repeats of the records at the cursor are not fresh; records older than the cursor are).
    fresh: int = 0
    moved: bool = False  # whether the cursor moved past where the read started
    dropped: int = 0  # records not landed because they already were
    # Hashes of the landed records at the cursor value, kept in the manifest: an API that
    # filters inclusively (`>= cursor`) sends them again, and they are recognised.
    boundary: tuple[str, ...] = ()


@dataclass(frozen=True)
class StallCheck:
    """When an incremental table's cursor has not moved for `runs` runs in a row while its
    source kept sending fresh records, landing warns (or fails, with `fail`); `hint` says
    which settings to check."""

    runs: int = 3
    fail: bool = False
    hint: str = ""


@dataclass(frozen=True)
class SourceItem:
    """One thing a source can land for a table (a file, a query result): identified by a
    fingerprint so it is landed once, read as Arrow batches only when it is new.

    An incremental item also says where it got to: `cursor()`, asked after its batches were
    read, is the table's cursor once this item is landed (e.g. the largest `updated_at` read).
    It goes into the partition's manifest, so it is committed exactly when the data is."""

    name: str
    fingerprint: str
    size: int
    read: Callable[[], tuple[Any, Iterator[Any]]]  # () -> (pyarrow.Schema, record batches)
    cursor: Callable[[], Any] | None = None
    # An incremental query that found nothing new lands nothing (a file always lands).
    land_if_empty: bool = True
    # A whole snapshot of the table: its partition replaces the older ones in the raw
    # relation (the lake keeps them all).
    replace: bool = False
    # With a primary key, targets also expose each key once (latest wins: by `order_by`, the
    # cursor column, then by landing order) as raw.<source>__<table>__latest.
    primary_key: tuple[str, ...] = ()
    order_by: str | None = None
    # A richer read for landing (files): () -> an object with `schema`, `batches()` and
    # optionally `copy_to(destination, extra, threads)` and `bad_rows` (ingest.formats.FileRead),
    # so the schema is checked before anything is written and DuckDB can write the part.
    open: Callable[[], Any] | None = None
    # An incremental read's ReadReport, asked after its batches were read; its identity is
    # the fingerprint the landed read is recorded under (`fingerprint` then only has to
    # differ from every landed one, so the source is asked on every run).
    report: Callable[[], ReadReport] | None = None
    stall: StallCheck | None = None


@dataclass(frozen=True)
class Probe:
    """What a brief look at a source or a target found (`millpond check`): `problems`, each
    naming the millpond.yml key to change and what to do, and what was seen (`detail`, and per
    table what its extract would read, `reads`). A probe writes nothing and waits seconds, not
    minutes: it connects, lists or asks once, with a short timeout."""

    detail: str = ""
    problems: tuple[str, ...] = ()
    reads: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TableState:
    """What a source table has landed so far: the cursor of its newest partition that has one
    (read from the lake's manifests, the durable truth), None before the first, and the
    hashes of the records landed at that cursor value (ReadReport.boundary)."""

    cursor: Any = None
    boundary: tuple[str, ...] = ()


class Source(Protocol):
    """A configured source: what is there to land for each table."""

    def items(self, table: str, state: TableState) -> list[SourceItem]:
        """Everything currently offered for the table (known fingerprints are skipped);
        incremental sources read from `state.cursor` on."""
        ...

    def warnings(self) -> list[str]:
        """Things a user should hear about at run start (e.g. files no table claims)."""
        ...

    # Optional: `offers_new(table, state, landed) -> bool | None`, whether the table offers
    # anything whose fingerprint is not in `landed`, told from a listing and remembered
    # hashes without reading data; None (or no such method) when a query would have to run.
    # It lets a run with nothing new be settled before any orchestrator starts.
    #
    # Optional: `probe(timeout) -> Probe`, a look at the source that writes nothing (the inbox
    # exists, the database answers `select 1`, the API's base URL answers) for `millpond
    # check`; a kind without one is reported as not probed.


@dataclass(frozen=True)
class SourceKind:
    """A source kind: its config model (with `kind: Literal[name]`) and its factory."""

    config_model: type[BaseModel]
    create: Callable[[str, Any, MillpondConfig], Source]


# ---------------------------------------------------------------------------------------------
# Targets


@dataclass(frozen=True)
class LoadedTable:
    """What loading one raw table did: partitions registered now, their rows and bytes, and
    the raw relation's total rows after the load."""

    relation: str
    partitions: list[str] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0
    table_rows: int = 0

    @classmethod
    def of(cls, relation: str, manifests: list[Any], table_rows: int) -> LoadedTable:
        """From the manifests (partition_id, rows, bytes) of the partitions loaded now."""
        return cls(
            relation=relation,
            partitions=[m.partition_id for m in manifests],
            rows=sum(m.rows for m in manifests),
            bytes=sum(m.bytes for m in manifests),
            table_rows=table_rows,
        )


@dataclass(frozen=True)
class PublishedMarts:
    """Where readers find the marts now, and each relation's row count."""

    location: str
    tables: dict[str, int]
    bytes: int | None = None

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


class Target(Protocol):
    """A warehouse dbt builds into: loads raw partitions, counts rows, publishes marts and
    writes its own dbt profile output."""

    name: str
    raw_schema: str

    def writer_lock(self) -> AbstractContextManager[None]:
        """Held by every writer of the warehouse (load, dbt, publish), across processes."""
        ...

    def load_table(self, lake: Any, source: str, table: str) -> LoadedTable:
        """Register or load every landed partition of the table not loaded yet, each with its
        bookkeeping in one transaction; raises LoadError for data that cannot go in."""
        ...

    def row_count(self, relation: str) -> int: ...

    def loaded_partitions(self, source: str, table: str) -> set[str]:
        """The ids of the partitions the table's raw relation holds (for `millpond lake ls`)."""
        ...

    def drop_partition(self, source: str, table: str, partition_id: str) -> bool:
        """Take one partition out of the raw relation, in one transaction; False when it did
        not hold it (`millpond lake drop`, backfill)."""
        ...

    def publish(self, run_id: str, schemas: list[str], keep: int) -> PublishedMarts:
        """Expose the marts of `schemas` to readers atomically (old or new, never a mix)."""
        ...

    def dbt_output(self) -> dict[str, Any]:
        """The dbt profile output (type, connection, schema) for this warehouse; secrets as
        env_var() references, never values, since the profile is written to disk."""
        ...

    def dbt_env(self) -> dict[str, str]:
        """Environment variables the dbt output refers to (secrets live only here)."""
        ...

    def release(self) -> None:
        """Close whatever the target keeps open in this process (dbt adapter caches)."""
        ...

    # Optional: `probe(timeout) -> Probe`, whether the warehouse can be reached and read,
    # writing nothing (no lock file, no schema): what `millpond check` asks each target.
    #
    # Optional: `connect() -> context manager of a DB-API connection` to the warehouse, held
    # under the writer lock for the block: what a Python node's `context.warehouse()` gives.


# Rows per Arrow batch a marts reader streams: what a CSV or Parquet answer holds in memory.
MARTS_BATCH_ROWS = 65_536


class MartsReader(Protocol):
    """A read-only session on a target's published marts: what the marts API and a team's
    own routers query. Each target brings its own (`TargetKind.reader`), so the API names no
    target; a reader sees one publish from open to close, never a mix of two."""

    snapshot: str | None  # which publish is being read (DuckDB: the snapshot's run id)
    location: str
    placeholder: str  # how a bound parameter is written in this engine's SQL
    # The engine's errors that mean a request's values do not fit a column (the API answers
    # 400 with the message, not 503).
    bad_input: tuple[type[Exception], ...]

    def relation(self, schema: str, name: str) -> str:
        """The quoted relation readers query for the dbt schema's table `name`."""
        ...

    def relations(self) -> dict[tuple[str, str], list[tuple[str, str]]]:
        """(dbt schema, table) -> [(column, SQL type)] of every published relation."""
        ...

    def scalar(self, query: str, params: list[Any]) -> Any: ...
    def rows(self, query: str, params: list[Any]) -> list[dict[str, Any]]: ...
    def batches(self, query: str, params: list[Any]) -> pa.RecordBatchReader: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class TargetKind:
    """A warehouse kind: its config model, its factory and its marts reader.

    `reader(config)` opens the published marts read-only and raises FileNotFoundError when
    nothing is published yet. `published_key(config)` names the publish readers see now
    without opening it (DuckDB: the snapshot file), so the API rebuilds what it derives from
    the marts only when it changed; None (or no such function) when nothing is cheaper than
    opening a reader."""

    config_model: type[BaseModel]
    create: Callable[[Any, MillpondConfig], Target]
    reader: Callable[[MillpondConfig], MartsReader]
    published_key: Callable[[MillpondConfig], str | None] | None = None


# ---------------------------------------------------------------------------------------------
# Node kinds


class BuildScope(Protocol):
    """What a node kind may use while building its part of the graph."""

    config: MillpondConfig

    @property
    def target(self) -> Target: ...
    def resource(self, key: str, factory: Callable[[], R]) -> R:
        """One object per run and key (e.g. the parsed dbt project), built on first use."""
        ...


class NodeScope(BuildScope, Protocol):
    """What a node handler may use during a run; the composition root provides it."""

    run_id: str

    @property
    def lake(self) -> Any: ...
    @property
    def ledger(self) -> Any: ...


class NodeReport(Protocol):
    """What a handler fills in for the ledger and the summary; a handler that found nothing
    to do sets `status = "unchanged"` (else a handler that returns succeeded)."""

    status: str
    attempt: int
    rows: int | None
    bytes: int | None
    detail: dict[str, Any]


# Records a node that had nothing to do (the second half of `NodeKind.up_to_date`).
Settle = Callable[[NodeReport], None]


class Stage(IntEnum):
    """Where a node kind's nodes enter the graph. Kinds build stage by stage (kinds of one
    stage in registration order), each seeing the nodes of the kinds built before it, so a
    kind declares its stage and its place holds whatever name its entry point has."""

    EXTRACT = 10  # data into the lake; sees no other node
    LOAD = 20  # the lake into the warehouse; sees what is extracted
    TRANSFORM = 30  # built from what is loaded (dbt)
    PUBLISH = 40  # waits for every node before it
    # Nodes a user places among the others (`nodes:` in millpond.yml, `after:`/`before:`):
    # built last, so they can name any node; `Node.before` adds their edges into earlier
    # nodes (publish included, unless placed after it).
    PLACED = 50


@dataclass(frozen=True)
class NodeKind:
    """A node kind: how its nodes enter the graph and how one runs.

    `build(scope, nodes_so_far)` returns this kind's nodes; kinds build in the order of
    their `stage` (registration order within a stage), so a kind sees the nodes of the
    kinds before it (publish, the last stage, waits for every sink). A kind that does not
    say is a `TRANSFORM` kind: built after the loads, and waited for by publish.
    `needs_project` says whether building parses the dbt project, so a single extract node
    under Airflow starts without it.

    `up_to_date(scope, node)` tells, without side effects, that running the node now would
    change nothing (no new data, nothing to rebuild) and returns what records it as such
    (called with the node's report); None when it would do something or cannot tell. When
    every node of a run is up to date, `millpond run` settles the run with these before the
    orchestrator starts (millpond.runtime.nothing_new).

    `keep(scope, node)` returns what records a node that a retry keeps as the run it retries
    left it, without running it (millpond.runtime.retry): e.g. a dbt node carries its
    fingerprint forward. None (or no `keep`): the node is just recorded `unchanged`."""

    build: Callable[[BuildScope, list[Node]], list[Node]]
    run: Callable[[NodeScope, Node, NodeReport], None]
    needs_project: bool = False
    up_to_date: Callable[[NodeScope, Node], Settle | None] | None = None
    stage: Stage = Stage.TRANSFORM
    keep: Callable[[NodeScope, Node], Settle | None] | None = None
    # A kind a user configures node by node under `nodes:` in millpond.yml (python, command)
    # declares its config model here (with `kind: Literal[name]`); the config's `nodes` union
    # is built from these, as `sources` is from the source kinds.
    config_model: type[BaseModel] | None = None


SOURCES: Registry[SourceKind] = Registry("source")
TARGETS: Registry[TargetKind] = Registry("target")
NODE_KINDS: Registry[NodeKind] = Registry("node", order=lambda kind: kind.stage)
