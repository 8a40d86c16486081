"""Response models: what the OpenAPI schema promises each endpoint returns."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    ledger: str
    marts: str
    snapshot: str | None = None


class Run(BaseModel):
    run_id: str
    orchestrator: str | None = None
    trigger: str | None = None
    target: str | None = None
    status: str
    error: str | None = None
    flow_run_id: str | None = None
    # When the run was asked for (POST /runs, the schedule, the UI); null for a CLI run.
    queued_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    duration_ms: int | None = None
    summary: dict[str, Any] | None = None
    nodes: int = 0
    tests_failed: int = 0
    # The run this one retries (`millpond retry`, POST /runs/{id}/retry); null for a run.
    retry_of: str | None = None


class RunPage(BaseModel):
    items: list[Run]
    total: int
    limit: int
    offset: int


class TestResult(BaseModel):
    run_id: str
    node_id: str | None = None
    test: str
    status: str
    failures: int | None = None
    message: str | None = None
    recorded_at: dt.datetime | None = None


class RowCount(BaseModel):
    run_id: str
    relation: str
    rows: int
    recorded_at: dt.datetime | None = None


class Anomaly(BaseModel):
    """A monitor's finding (docs/monitoring.md): a volume anomaly (`observed` outside
    `low`..`high`, the band around the history's `median`) or a freshness alert (no landing
    since `last_landed_at` for longer than `expect_every_seconds`)."""

    anomaly_id: str
    run_id: str | None = None
    monitor: Literal["volume", "freshness"]
    subject_kind: Literal["source_table", "mart"]
    subject: str
    severity: Literal["warn", "error"]
    observed: int | None = None
    low: float | None = None
    high: float | None = None
    median: float | None = None
    mad: float | None = None
    history: int | None = None
    last_landed_at: dt.datetime | None = None
    expect_every_seconds: float | None = None
    message: str
    at: dt.datetime


class RunDetail(Run):
    tests: list[TestResult] = []
    row_counts: list[RowCount] = []
    anomalies: list[Anomaly] = []
    retried_by: list[str] = Field(default_factory=list, description="runs that retried it")


class NodeRun(BaseModel):
    run_id: str
    node_id: str
    kind: str | None = None
    attempt: int
    status: str
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    duration_ms: int | None = None
    rows: int | None = None
    bytes: int | None = None
    error: str | None = None


class TablePoint(BaseModel):
    run_id: str
    rows: int
    recorded_at: dt.datetime | None = None


class TableHistory(BaseModel):
    relation: str
    latest_rows: int
    points: list[TablePoint]


# dbt's selector syntax (`+model`, `tag:x`, `path:models/marts`, `a,b`, `@m`, `2+m`, `*`) and
# millpond's node ids (`load.erp.orders`, `extract.erp.*`): nothing else.
SELECTOR = r"^[A-Za-z0-9_.:+*?@,/=\- ]+$"
MAX_SELECTORS = 100
MAX_SELECTOR_CHARS = 500


def _no_parent_dirs(value: str) -> str:
    if ".." in value:
        raise ValueError("a selector has no `..` (paths are relative to the dbt project)")
    return value


Selector = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_SELECTOR_CHARS, pattern=SELECTOR),
    AfterValidator(_no_parent_dirs),
]


def _registered_target(value: str | None) -> str | None:
    """A target the registry knows (`duckdb`, `postgres`, ...): a name, never a path."""
    from millpond.core.registry import TARGETS

    if value is not None and value not in TARGETS.names():
        raise ValueError(f"unknown target (targets: {', '.join(TARGETS.names())})")
    return value


class RunRequest(BaseModel):
    """What `POST /runs` may ask for (the deployment's parameters; all optional).

    Checked here, before anything starts: a value that cannot be a selector or a target is a
    422 naming the field, not a run that fails later (or a 500 on a 5 MB selector)."""

    model_config = ConfigDict(extra="forbid")

    select: list[Selector] = Field(
        default_factory=list, max_length=MAX_SELECTORS, description="dbt-style selectors to run"
    )
    exclude: list[Selector] = Field(
        default_factory=list, max_length=MAX_SELECTORS, description="dbt-style selectors to skip"
    )
    full_refresh: bool = Field(False, description="rebuild incremental models from scratch")
    target: Annotated[str | None, AfterValidator(_registered_target)] = Field(
        None, max_length=64, description="warehouse target (overrides warehouse.target)"
    )

    def args(self) -> list[str]:
        """The same request as `millpond run` options (the fallback without a deployment)."""
        args = [f"--select={s}" for s in self.select] + [f"--exclude={s}" for s in self.exclude]
        args += ["--full-refresh"] if self.full_refresh else []
        return args + ([f"--target={self.target}"] if self.target else [])


class Triggered(BaseModel):
    run_id: str
    # started: a `millpond run` process; scheduled: a flow run of the Prefect deployment.
    status: Literal["started", "scheduled"]
    pid: int | None = None
    flow_run_id: str | None = None


class Problem(BaseModel):
    detail: str


class RunningConflict(BaseModel):
    detail: str
    run_id: str | None


class MartColumn(BaseModel):
    name: str
    type: str
    description: str = ""


class MartInfo(BaseModel):
    name: str
    schema_name: str
    description: str = ""
    columns: list[MartColumn]
    path: str


class MartList(BaseModel):
    snapshot: str | None
    marts: list[MartInfo]
