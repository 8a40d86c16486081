"""The python node kind: a team's own function as a node of the graph (batch ETL, an export).

    nodes:
      enrich: {kind: python, callable: "etl.enrich:run", after: [load.erp.orders], before: [dbt]}

The callable is imported from the project folder (the folder holding millpond.yml, put on
sys.path) when the graph is built, so a module or function that is missing is an error naming
`nodes.<name>.callable` at `millpond check` and at every run start, before anything runs. It is
called with a `PythonContext` (run and node ids, a logger bound to both, the lake, the
warehouse under its writer lock, the published marts read-only) and returns what the ledger
records: nothing, a row count, or a mapping with `rows`, `bytes` and anything else (kept as
the node's detail).

A python node always runs: it has no fingerprint, so a run with one never settles as "nothing
new". Its timeout fails the node; a thread cannot be stopped, so under the Prefect flow the
function finishes in the background (under Airflow the task's process is killed).
"""

from __future__ import annotations

import contextvars
import importlib
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator

from millpond.core.config import MillpondConfig
from millpond.core.graph import Node
from millpond.core.logs import logger
from millpond.core.registry import TARGETS, BuildScope, NodeKind, NodeReport, NodeScope, Stage
from millpond.nodes.placed import PlacedConfigError, PlacedNodeConfig, build_placed

PYTHON_KIND = "python"


class PythonNodeConfig(PlacedNodeConfig):
    """`nodes.<name>` of kind python: the function to call, `package.module:function`."""

    kind: Literal["python"]
    callable: str

    @field_validator("callable")
    @classmethod
    def _module_colon_function(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", value):
            raise ValueError(f"{value!r} must look like package.module:function")
        return value


@dataclass(frozen=True)
class PythonParams:
    name: str
    callable: str


class PythonNodeError(Exception):
    """The function failed or returned something the ledger cannot record; retried by the
    node's `retries` like any failure (the message says what the function raised)."""

    retryable = True


class PythonTimeout(PythonNodeError):
    pass


def load_callable(config: MillpondConfig, name: str, ref: str) -> Callable[..., Any]:
    """The function `ref` names, imported with the project folder on sys.path; raises
    PlacedConfigError naming `nodes.<name>.callable`."""
    key = f"millpond.yml nodes.{name}.callable"
    module_name, _, function = ref.partition(":")
    folder = str(config.root.resolve())
    if folder not in sys.path:
        # Last, so a team's folder (its own serve/, say) never shadows what is installed.
        sys.path.append(folder)
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise PlacedConfigError(
            f"{key}: cannot import module {module_name!r} from the project folder {folder} ({exc})"
        ) from None
    except Exception as exc:
        raise PlacedConfigError(
            f"{key}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    found = getattr(module, function, None)
    if found is None:
        raise PlacedConfigError(
            f"{key}: module {module_name!r} ({getattr(module, '__file__', '?')}) has no "
            f"function {function!r}"
        )
    if not callable(found):
        raise PlacedConfigError(f"{key}: {ref} is not a function")
    return found


def params(scope: BuildScope, name: str, config: PythonNodeConfig) -> PythonParams:
    load_callable(scope.config, name, config.callable)  # found now, or the graph is refused
    return PythonParams(name, config.callable)


class PythonContext:
    """What a python node's function gets."""

    def __init__(self, scope: NodeScope, node: Node, attempt: int) -> None:
        self._scope = scope
        self.run_id: str = scope.run_id
        self.node_id: str = node.id
        self.attempt = attempt
        self.config: MillpondConfig = scope.config
        self.project_dir: Path = scope.config.root
        self.lake_url: str = scope.config.lake_url
        # Records carry run_id and node_id, land in the run's log and are masked.
        self.log = logger.bind(run_id=self.run_id, node_id=self.node_id)

    @property
    def lake(self) -> Any:
        """The lake (`ingest.lake.Lake`): `.fs` is its pyarrow filesystem, `.root` its folder
        or bucket prefix, `.manifests(source, table)` its landed partitions."""
        return self._scope.lake

    @property
    def filesystem(self) -> Any:
        """The lake's pyarrow filesystem (local or S3)."""
        return self._scope.lake.fs

    @contextmanager
    def warehouse(self) -> Iterator[Any]:
        """A DB-API connection to the warehouse (DuckDB or PostgreSQL) under its writer lock,
        for the block: other writers (loads, dbt, publish) wait for it."""
        connect = getattr(self._scope.target, "connect", None)
        if connect is None:
            raise PythonNodeError(f"the {self.config.target_name} target gives no connection")
        with connect() as con:
            yield con

    @contextmanager
    def marts(self) -> Iterator[Any]:
        """The published marts, read-only (a `MartsReader`: `rows(sql, params)`,
        `relation(schema, name)`, ...), as readers see them; FileNotFoundError before the
        first publish."""
        reader = TARGETS.get(self.config.target_name).reader(self.config)
        try:
            yield reader
        finally:
            reader.close()


def run(scope: NodeScope, node: Node, report: NodeReport) -> None:
    p: PythonParams = node.params
    function = load_callable(scope.config, p.name, p.callable)
    context = PythonContext(scope, node, report.attempt)
    result: dict[str, Any] = {}

    def call() -> None:
        try:
            result["value"] = function(context)
        except BaseException as exc:  # handed to the node's thread below
            result["error"] = exc

    # The function runs in a thread of its own (with this thread's log context) so that its
    # timeout can fail the node; the thread itself cannot be stopped.
    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(call,), name=node.id, daemon=True
    )
    thread.start()
    thread.join(node.timeout_seconds)
    if thread.is_alive():
        raise PythonTimeout(
            f"{p.callable} did not return within its timeout ({node.timeout_seconds:g} s, "
            f"nodes.{p.name}.timeout)"
        )
    if "error" in result:
        exc = result["error"]
        raise PythonNodeError(f"{p.callable} raised {type(exc).__name__}: {exc}") from exc
    _record(p, result.get("value"), report)


def _record(p: PythonParams, value: Any, report: NodeReport) -> None:
    """What the function returned, as the node's rows, bytes and detail."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | Mapping):
        raise PythonNodeError(
            f"{p.callable} returned a {type(value).__name__}; return nothing, a row count, "
            "or a mapping such as {'rows': 10, 'bytes': 2048}"
        )
    values = {"rows": value} if isinstance(value, int) else dict(value)
    for key in ("rows", "bytes"):
        number = values.pop(key, None)
        if number is not None and (isinstance(number, bool) or not isinstance(number, int)):
            raise PythonNodeError(f"{p.callable} returned {key}={number!r}; expected an integer")
        setattr(report, key, number)
    report.detail = {str(k): v for k, v in values.items()}


PYTHON = NodeKind(
    build=build_placed(PYTHON_KIND, params),
    run=run,
    needs_project=True,
    stage=Stage.PLACED,
    config_model=PythonNodeConfig,
)
