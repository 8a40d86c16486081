"""The stack's configuration: `millpond.yml` as typed pydantic models.

One config model serves every entry point (CLI, Prefect flow, `run-node` under Airflow, the API),
so a node on any worker sees exactly what the run that scheduled it saw. The `sources` and
`warehouse` sections are typed by the registered kinds (`config_model`); reading the file,
`${VAR}` interpolation and `MILLPOND_...` overrides are millpond.core.config_loading's.

Relative paths are resolved against the directory holding the config file, so a run started from
any working directory (Airflow's, a notebook's) touches the same files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from millpond.core.config_file import ConfigError as ConfigError  # where callers get it
from millpond.core.masking import (
    MASK,
    collect_secrets,
    mask_data,
    mask_inline,
    mask_url,
)
from millpond.core.monitoring import MonitorsConfig


def check_names(kind: str, names: Iterable[str]) -> None:
    """Names become SQL identifiers and node ids: keep them plain."""
    for name in names:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ValueError(f"{kind} name {name!r} must be lower-case letters, digits or _")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodePolicy(StrictModel):
    """Retry and timeout policy shared by every node of one kind."""

    retries: int = Field(0, ge=0, le=20)
    retry_delay_seconds: float = Field(5.0, ge=0)
    timeout_seconds: float = Field(3600.0, gt=0)


class S3Connection(StrictModel):
    """How to reach an S3-compatible server (AWS, MinIO, ...): shared by the lake and by a
    `files` source reading an S3 prefix. Unset keys fall back to the AWS defaults (the
    AWS_* environment variables); credentials belong in `${ENV}` references, not the file.
    Addressing is path-style (`endpoint/bucket/key`) whenever `endpoint_url` is set, which is
    what MinIO needs."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None

    @field_validator("endpoint_url")
    @classmethod
    def _http_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https:// (e.g. http://minio:9000)")
        return value


class LakeConfig(S3Connection):
    """Where raw partitions land: a local folder (`file://`) or S3/MinIO (`s3://`)."""

    url: str = "file://.millpond/lake"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("file://", "s3://")):
            raise ValueError("must start with file:// (local folder) or s3:// (S3/MinIO)")
        return value


DEFAULT_DBT_DIR = "transform"  # `dbt: {}` means this folder beside millpond.yml


class DbtConfig(StrictModel):
    """Any dbt project; millpond runs it in-process through dbtRunner.

    Without `profiles_dir`, millpond writes the profile for its configured warehouse under the
    state dir, named as the project's dbt_project.yml asks, so a project needs no profiles.yml
    of its own; an explicit `profiles_dir` (and `target`) wins."""

    project_dir: Path = Path(DEFAULT_DBT_DIR)
    profiles_dir: Path | None = None
    target: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    # Vars holding secrets (besides those named like one, e.g. `api_token`): masked everywhere
    # and scrubbed from dbt's logs and target/ files (millpond.nodes.dbt.secrets).
    secret_vars: list[str] = Field(default_factory=list)
    policy: NodePolicy = NodePolicy()
    # A dbt source of a millpond source (or the raw schema) that no configured table loads:
    # `warn` (log and run summary) or `error` (the run is refused before it starts).
    on_unloaded_source: Literal["warn", "error"] = "warn"

    @model_validator(mode="after")
    def _secret_vars_exist(self) -> DbtConfig:
        """A misspelt name would leave the real secret var unmasked: refuse it."""
        unknown = [name for name in self.secret_vars if name not in self.vars]
        if unknown:
            known = ", ".join(sorted(self.vars)) or "none"
            raise ValueError(
                f"secret_vars names {', '.join(map(repr, unknown))}, not in dbt.vars "
                f"(vars: {known})"
            )
        return self


class MetadataConfig(StrictModel):
    """The ledger database: `embedded` (PostgreSQL inside the state dir) or a postgresql:// URL."""

    url: str = "embedded"

    @field_validator("url")
    @classmethod
    def _embedded_or_postgres(cls, value: str) -> str:
        if value != "embedded" and not value.startswith(("postgresql://", "postgresql+psycopg://")):
            raise ValueError("must be 'embedded' or a postgresql:// URL")
        return value


class SourceConfigBase(StrictModel):
    """What every source kind's config has: its kind, its tables and the node policies."""

    kind: str
    extract: NodePolicy = NodePolicy(retries=2)
    load: NodePolicy = NodePolicy(retries=1)

    def table_names(self) -> list[str]:
        tables = getattr(self, "tables", {})
        return sorted(tables)

    # Every kind's `tables` (declared by the kind) gets these: a list of names is a mapping
    # of defaults, names become SQL identifiers and node ids, and one table is the minimum.
    @field_validator("tables", mode="before", check_fields=False)
    @classmethod
    def _list_of_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {str(name): {} for name in value}
        return value

    @field_validator("tables", check_fields=False)
    @classmethod
    def _safe_table_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_names("table", value)
        if not value:
            raise ValueError("at least one table is required")
        return value


class TargetConfigBase(StrictModel):
    """What every warehouse target's config has."""

    raw_schema: str = "raw"


class PublishConfig(StrictModel):
    """Which schemas readers get, and how many old snapshots to keep."""

    # Unset: the schemas holding the dbt project's table and incremental models.
    schemas: list[str] | None = None
    keep: int = Field(5, ge=1)
    # The raw relations the loads filled (the raw schema, bookkeeping left out) published too.
    # Unset: yes when there is no dbt section (an ingest-only project), else no.
    raw: bool | None = None


class PrefectConfig(StrictModel):
    """The Prefect server that shows runs; `api_url` unset means a local server we start."""

    api_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(4200, ge=1, le=65535)
    concurrency: int = Field(4, ge=1, le=64)


class AirflowConfig(StrictModel):
    """How the generated Airflow DAG's tasks run (docs/deploy-airflow.md).

    `warm_worker`: `millpond run-start` starts a warm node worker on its machine, which forks
    each `run-node` task with millpond and dbt already imported (millpond.cli.warm);
    `run-finish` stops it, and it exits by itself after `warm_worker_idle_seconds` idle."""

    warm_worker: bool = True
    warm_worker_idle_seconds: float = Field(600.0, gt=0)


class ServeConfig(StrictModel):
    """Where the FastAPI service listens, and a team's own routers mounted beside millpond's
    (`"package.module:router"`, imported at start, with the same API-key auth)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    routers: list[str] = Field(default_factory=list)
    # Paths open without an API key besides /health (e.g. [/metrics] for a scraper with no
    # key): an exact path, or `/prefix/*` for everything under /prefix/.
    public: list[str] = Field(default_factory=list)

    @field_validator("routers")
    @classmethod
    def _module_colon_name(cls, value: list[str]) -> list[str]:
        for ref in value:
            if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", ref):
                raise ValueError(f"{ref!r} must look like package.module:router")
        return value

    @field_validator("public")
    @classmethod
    def _public_paths(cls, value: list[str]) -> list[str]:
        for path in value:
            stem = path.removesuffix("/*")
            if not re.fullmatch(r"/[\w./~-]*", stem) or ".." in stem:
                raise ValueError(
                    f"{path!r}: expected a path like /metrics, or /prefix/* for everything "
                    "under /prefix/ (/* would open the whole API: unset MILLPOND_API_KEYS "
                    "instead)"
                )
        return value


# `anomaly`: a volume anomaly (millpond.nodes.monitors); `freshness`: a source table that has
# not landed for longer than its `expect_every` (a run, or `millpond check-freshness`).
NotifyEvent = Literal["failure", "success", "test_failure", "anomaly", "freshness"]


def _failure_only() -> list[NotifyEvent]:
    return ["failure"]


class NotifyConfig(StrictModel):
    """One webhook told about runs: `on` which outcomes, in which body `format`.

    `test_failure` fires for a run with a failing data test (success or not); `anomaly` for a
    volume anomaly and `freshness` for a stale source table (docs/monitoring.md)."""

    on: list[NotifyEvent] = Field(default_factory=_failure_only, min_length=1)
    # A secret: Slack and Teams webhook URLs carry their token in the path.
    webhook: SecretStr
    format: Literal["json", "slack", "teams"] = "json"
    timeout_seconds: float = Field(5.0, gt=0, le=60)
    retries: int = Field(3, ge=0, le=10)
    # The link in the message; unset: the API's dashboard at serve.host:serve.port.
    dashboard_url: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _yaml_on_key(cls, data: Any) -> Any:
        """YAML 1.1 reads a bare `on:` key as the boolean true; take it back."""
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data

    @field_validator("webhook")
    @classmethod
    def _http_url(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class MillpondConfig(StrictModel):
    """The whole stack, as written in millpond.yml."""

    project: str = "millpond"
    state_dir: Path = Path(".millpond")
    lake: LakeConfig = LakeConfig()
    # Each registered target's section; `warehouse.target` picks the one dbt builds into.
    warehouse: Any = None
    # None (no `dbt` section, or `dbt: null`): an ingest-only project, extract, load and
    # publish of the raw relations. `dbt: {}` is the default project folder, `transform`.
    dbt: DbtConfig | None = None
    metadata: MetadataConfig = MetadataConfig()
    sources: dict[str, Any] = Field(default_factory=dict)
    # Nodes the team adds to the graph (python, command; docs/extending.md), typed by the
    # node kinds that declare a `config_model`.
    nodes: dict[str, Any] = Field(default_factory=dict)
    publish: PublishConfig = PublishConfig()
    prefect: PrefectConfig = PrefectConfig()
    airflow: AirflowConfig = AirflowConfig()
    serve: ServeConfig = ServeConfig()
    notify: list[NotifyConfig] = Field(default_factory=list)
    # Volume and freshness checks from the run ledger (docs/monitoring.md).
    monitors: MonitorsConfig = MonitorsConfig()
    schedule: str | None = "0 6 * * *"
    # Set by load_config: the folder relative paths are resolved against.
    root: Path = Path(".")
    # Set by load_config: the key paths whose value came from a `${VAR}` (path -> value).
    _from_env: dict[tuple[Any, ...], str] = PrivateAttr(default_factory=dict)

    def note_from_env(self, values: dict[tuple[Any, ...], str]) -> None:
        """Remember which values the file read from the environment (load_config)."""
        self._from_env = dict(values)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        """A section left empty in YAML (`lake:` with only comments below it) is null: it
        means the defaults. `sources:` or `sources: []` means no sources, as `sources: {}`."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key in [k for k, v in data.items() if v is None and k in _SECTIONS]:
            del data[key]
        for section in ("sources", "nodes"):
            if data.get(section) == []:
                data[section] = {}
        if isinstance(data.get("sources"), list):
            raise ValueError(
                "sources must map each source's name to its settings, not be a list: write "
                "`sources: {erp: {kind: files, path: inbox/erp, tables: [orders]}}` (a name "
                "per source, no leading `-`), or `sources: {}` for none"
            )
        return data

    @field_validator("state_dir", mode="before")
    @classmethod
    def _named_state_dir(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must be a folder, e.g. .millpond (empty is the project folder)")
        return value

    @field_validator("state_dir")
    @classmethod
    def _plain_state_dir(cls, value: Path) -> Path:
        """The state folder is where everything is written: not a kernel filesystem."""
        if value.is_absolute() and value.parts[1:2] in (("proc",), ("sys",), ("dev",)):
            raise ValueError(
                f"{value} is under /{value.parts[1]}, a kernel filesystem millpond cannot keep "
                "its state in; use a folder of your own, e.g. .millpond"
            )
        return value

    @model_validator(mode="after")
    def _state_dir_is_a_folder(self) -> MillpondConfig:
        """An existing file where the state folder (or one above it) should be would fail
        the first write with a bare OS error; say so now, without creating anything."""
        state = self.state
        for folder in (state, *state.parents):
            if folder.exists():
                if not folder.is_dir():
                    raise ValueError(
                        f"state_dir: {folder} is a file, not a folder; choose another state_dir"
                    )
                break
        return self

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        """A schedule that cannot fire is found here, not inside Airflow or Prefect later."""
        if value is None:
            return value
        from cronsim import CronSim, CronSimError

        try:
            CronSim(value, datetime.now())
        except CronSimError as exc:
            raise ValueError(f"not a cron expression ({exc}); e.g. '0 6 * * *'") from None
        return value

    @field_validator("sources")
    @classmethod
    def _safe_source_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_names("source", value)
        return value

    @field_validator("nodes")
    @classmethod
    def _safe_node_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_names("node", value)
        return value

    def resolve(self, path: Path | str) -> Path:
        """An absolute path for a config path, relative ones taken from the config's folder."""
        path = Path(path)
        return path if path.is_absolute() else (self.root / path).resolve()

    @property
    def state(self) -> Path:
        return self.resolve(self.state_dir)

    @property
    def target_name(self) -> str:
        """The warehouse target dbt builds into (`warehouse.target`)."""
        return str(self.warehouse.target)

    @property
    def target_config(self) -> Any:
        """The chosen target's own section (`warehouse.<target>`)."""
        return getattr(self.warehouse, self.target_name)

    @property
    def published_dir(self) -> Path:
        return self.state / "published"

    @property
    def locks_dir(self) -> Path:
        """Where the stack's named locks live (see millpond.core.locks)."""
        return self.state / "locks"

    @property
    def logs_dir(self) -> Path:
        return self.state / "logs"

    @property
    def dbt_settings(self) -> DbtConfig:
        """The `dbt` section; a ConfigError for an ingest-only project (no `dbt` section),
        so code that needs a dbt project says so instead of failing on None."""
        if self.dbt is None:
            raise ConfigError(
                "this project has no dbt section (ingest-only): add `dbt: {project_dir: "
                "transform}` to millpond.yml for dbt models"
            )
        return self.dbt

    @property
    def has_dbt(self) -> bool:
        """Whether the project has a dbt section (else it is ingest-only)."""
        return self.dbt is not None

    @property
    def publishes_raw(self) -> bool:
        """Whether publish exposes the raw relations (`publish.raw`, by default only in an
        ingest-only project)."""
        return self.publish.raw if self.publish.raw is not None else self.dbt is None

    @property
    def dbt_project_dir(self) -> Path:
        return self.resolve(self.dbt_settings.project_dir)

    @property
    def dbt_profiles_dir(self) -> Path:
        """The user's profiles_dir, or the folder of millpond's generated profile: one per
        target, so a run on one target never rewrites the profile a run on the other reads."""
        if self.dbt_settings.profiles_dir is not None:
            return self.resolve(self.dbt_settings.profiles_dir)
        return self.state / "dbt" / "profile" / self.target_name

    @property
    def lake_url(self) -> str:
        """The lake URL with a relative file:// path made absolute."""
        if self.lake.url.startswith("file://"):
            return "file://" + str(self.resolve(self.lake.url.removeprefix("file://")))
        return self.lake.url

    def secrets(self) -> list[str]:
        """Every secret value this config holds, for log masking, by millpond.core.masking's
        policy: keys named like secrets, `auth` fields, credential headers, webhooks, dbt
        secret vars, and passwords inside URLs and connection strings, anywhere."""
        found = collect_secrets(self.model_dump(), self._secret_vars())
        return sorted(set(found + self.env_secrets()))

    def env_secrets(self) -> list[str]:
        """The values a node's `env` reads from `${VAR}`s: handed to a command's process,
        masked everywhere else (logs, the ledger)."""
        return [self._from_env[path] for path in self._env_secret_paths()]

    def _env_secret_paths(self) -> list[tuple[Any, ...]]:
        return [
            path
            for path, value in self._from_env.items()
            if len(path) == 4
            and path[0] == "nodes"
            and path[2] == "env"
            and value
            and path[1] in self.nodes
            and path[3] in getattr(self.nodes[path[1]], "env", {})
        ]

    def masked(self) -> dict[str, Any]:
        """The effective config as plain data, with passwords and keys replaced by ***."""
        from pydantic_core import to_jsonable_python

        data = to_jsonable_python(mask_data(self.model_dump(), self._secret_vars()))
        for path in self._env_secret_paths():
            data["nodes"][path[1]]["env"][path[3]] = MASK
        return data

    def _secret_vars(self) -> list[str]:
        return self.dbt.secret_vars if self.dbt is not None else []


_SECTIONS = {
    *("lake", "warehouse", "dbt", "metadata", "sources", "nodes"),
    *("publish", "prefect", "airflow", "serve", "notify", "monitors"),
}


def mask_urls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: mask_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_urls(v) for v in value]
    if not isinstance(value, str):
        return value
    return mask_inline(mask_url(value) if "://" in value else value)


def config_model() -> type[MillpondConfig]:
    """MillpondConfig with `sources` and `warehouse` typed by the registered kinds.

    Built from the registries at load time, so a new source kind or target is validated
    (and its errors name its keys) without this module knowing it."""
    from millpond.core.registry import NODE_KINDS, SOURCES, TARGETS

    node_models = tuple(k.config_model for _, k in NODE_KINDS.items() if k.config_model)
    key = (tuple(SOURCES.names()), tuple(TARGETS.names()), node_models)
    cached = _MODELS.get(key)
    if cached is not None:
        return cached
    if not TARGETS.names():
        raise ConfigError("no warehouse target is registered (millpond.runtime.kinds)")
    source_models = tuple(kind.config_model for _, kind in SOURCES.items())
    source_type: Any
    if source_models:
        union: Any = source_models[0] if len(source_models) == 1 else Union[source_models]  # noqa: UP007
        source_type = Annotated[union, Field(discriminator="kind")]
    else:
        source_type = SourceConfigBase
    fields: dict[str, Any] = {
        "target": (Literal[tuple(TARGETS.names())], TARGETS.names()[0]),
    }
    for name, kind in TARGETS.items():
        fields[name] = (kind.config_model | None, None)
    warehouse = create_model(
        "WarehouseConfig",
        __base__=WarehouseBase,
        __doc__="The warehouse dbt builds into: `target` and each target's own section.",
        **fields,
    )
    node_type: Any = Any
    if node_models:
        nodes_union: Any = node_models[0] if len(node_models) == 1 else Union[node_models]  # noqa: UP007
        node_type = Annotated[nodes_union, Field(discriminator="kind")]
    model = create_model(
        "MillpondConfig",
        __base__=MillpondConfig,
        warehouse=(warehouse, warehouse()),
        sources=(dict[str, source_type], Field(default_factory=dict)),
        nodes=(dict[str, node_type], Field(default_factory=dict)),
    )
    _MODELS[key] = model
    return model


class WarehouseBase(StrictModel):
    """Accepts the short form `{target: postgres, url: ...}`: keys beside `target` belong to
    the chosen target's section, or to another target that has such a key (so switching
    targets with --target or MILLPOND_WAREHOUSE__TARGET keeps the other's settings). A target
    chosen without a section gets its defaults."""

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        target = data.get("target") or cls.model_fields["target"].default
        sections = {
            name: field.annotation.__args__[0]  # type: ignore[union-attr]
            for name, field in cls.model_fields.items()
            if name != "target"
        }
        for key in [k for k in data if k not in sections and k != "target"]:
            owner = target
            if target not in sections or key not in sections[target].model_fields:
                owner = next((n for n, m in sections.items() if key in m.model_fields), target)
            section = dict(data.get(owner) or {})
            section[key] = data.pop(key)
            data[owner] = section
        return data

    @model_validator(mode="after")
    def _chosen_section(self) -> Any:
        target = self.target  # type: ignore[attr-defined]
        if getattr(self, target) is None:
            field = type(self).model_fields[target]
            model = field.annotation.__args__[0]  # type: ignore[union-attr]
            try:
                object.__setattr__(self, target, model())
            except ValidationError as exc:
                missing = ", ".join(str(e["loc"][0]) for e in exc.errors())
                raise ValueError(f"target {target!r} needs warehouse.{target}: {missing}") from None
        return self


_MODELS: dict[tuple[tuple[Any, ...], ...], type[MillpondConfig]] = {}
