"""The stack's configuration: `millpond.yml` read into typed pydantic models.

One config model serves every entry point (CLI, Prefect flow, `run-node` under Airflow, the API),
so a node on any worker sees exactly what the run that scheduled it saw. Loading happens in three
steps, each one a place where users otherwise get surprised:

1. `${VAR}` / `${VAR:-default}` interpolation, so secrets live in the environment, not the file;
2. `MILLPOND_<KEY>__<SUBKEY>=value` environment overrides (values parsed as YAML scalars);
3. validation, with errors that name the key path, the offending value and what was expected.

Relative paths are resolved against the directory holding the config file, so a run started from
any working directory (Airflow's, a notebook's) touches the same files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from millpond.masking import MASK, SECRET_NAME, mask_secret_keys, mask_url, url_password

DEFAULT_CONFIG_FILE = "millpond.yml"
ENV_PREFIX = "MILLPOND_"
# Environment variables with the prefix that are not config overrides.
RESERVED_ENV = {"MILLPOND_CONFIG", "MILLPOND_WAREHOUSE_PATH", "MILLPOND_RUN_ID"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A config file that cannot be used; the message says where and why."""


def _check_names(kind: str, names: Iterable[str]) -> None:
    """Names become SQL identifiers and node ids: keep them plain."""
    for name in names:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ValueError(f"{kind} name {name!r} must be lower-case letters, digits or _")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodePolicy(_Model):
    """Retry and timeout policy shared by every node of one kind."""

    retries: int = Field(0, ge=0, le=20)
    retry_delay_seconds: float = Field(5.0, ge=0)
    timeout_seconds: float = Field(3600.0, gt=0)


class LakeConfig(_Model):
    """Where raw partitions land: a local folder (`file://`) or S3/MinIO (`s3://`)."""

    url: str = "file://.millpond/lake"
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("file://", "s3://")):
            raise ValueError("must start with file:// (local folder) or s3:// (S3/MinIO)")
        return value


class WarehouseConfig(_Model):
    """The DuckDB file the pipeline owns; readers use published snapshots instead."""

    target: Literal["duckdb"] = "duckdb"
    path: Path = Path(".millpond/warehouse.duckdb")
    raw_schema: str = "raw"


class DbtConfig(_Model):
    """Any dbt project; millpond runs it in-process through dbtRunner."""

    project_dir: Path = Path("transform")
    profiles_dir: Path | None = None
    target: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    policy: NodePolicy = NodePolicy()


class MetadataConfig(_Model):
    """The ledger database: `embedded` (PostgreSQL inside the state dir) or a postgresql:// URL."""

    url: str = "embedded"

    @field_validator("url")
    @classmethod
    def _embedded_or_postgres(cls, value: str) -> str:
        if value != "embedded" and not value.startswith(("postgresql://", "postgresql+psycopg://")):
            raise ValueError("must be 'embedded' or a postgresql:// URL")
        return value


class CsvOptions(_Model):
    """Overrides for DuckDB's CSV sniffer; unset values are detected."""

    delimiter: str | None = None
    header: bool | None = None
    quote: str | None = None
    encoding: Literal["utf-8", "utf-16", "latin-1"] | None = None
    # Declared column types win over the sniffer's guess, e.g. {customer_code: VARCHAR}.
    types: dict[str, str] = Field(default_factory=dict)
    # Rows the sniffer samples to guess types; -1 reads the whole file first (slower, surer).
    sample_size: int = Field(20_480, ge=-1)


class FileTableConfig(_Model):
    """Which inbox files feed one raw table."""

    pattern: str | None = None  # glob relative to the source path; default: <table>[_-]*.<ext>


class FilesSourceConfig(_Model):
    """Export files dropped into a folder (an inbox), one or more files per table."""

    kind: Literal["files"]
    path: str
    format: Literal["auto", "csv", "xlsx"] = "auto"
    tables: dict[str, FileTableConfig]
    csv: CsvOptions = CsvOptions()
    # Files modified more recently than this are still arriving: left for the next run.
    settle_seconds: float = Field(0.0, ge=0)
    extract: NodePolicy = NodePolicy(retries=2)
    load: NodePolicy = NodePolicy(retries=1)

    @field_validator("tables", mode="before")
    @classmethod
    def _list_of_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {str(name): {} for name in value}
        return value

    @field_validator("tables")
    @classmethod
    def _safe_names(cls, value: dict[str, FileTableConfig]) -> dict[str, FileTableConfig]:
        _check_names("table", value)
        if not value:
            raise ValueError("at least one table is required")
        return value


SourceConfig = Annotated[FilesSourceConfig, Field(discriminator="kind")]


class PublishConfig(_Model):
    """Which dbt schemas readers get, and how many old snapshots to keep."""

    schemas: list[str] = Field(default_factory=lambda: ["marts", "aggregates"])
    keep: int = Field(5, ge=1)


class PrefectConfig(_Model):
    """The Prefect server that shows runs; `api_url` unset means a local server we start."""

    api_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 4200
    concurrency: int = Field(4, ge=1, le=64)


class ServeConfig(_Model):
    """Where the FastAPI service listens."""

    host: str = "127.0.0.1"
    port: int = 8000


class MillpondConfig(_Model):
    """The whole stack, as written in millpond.yml."""

    project: str = "millpond"
    state_dir: Path = Path(".millpond")
    lake: LakeConfig = LakeConfig()
    warehouse: WarehouseConfig = WarehouseConfig()
    dbt: DbtConfig = DbtConfig()
    metadata: MetadataConfig = MetadataConfig()
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    publish: PublishConfig = PublishConfig()
    prefect: PrefectConfig = PrefectConfig()
    serve: ServeConfig = ServeConfig()
    schedule: str | None = "0 6 * * *"
    # Set by load_config: the folder relative paths are resolved against.
    root: Path = Path(".")

    @field_validator("sources")
    @classmethod
    def _safe_source_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_names("source", value)
        return value

    def resolve(self, path: Path | str) -> Path:
        """An absolute path for a config path, relative ones taken from the config's folder."""
        path = Path(path)
        return path if path.is_absolute() else (self.root / path).resolve()

    @property
    def state(self) -> Path:
        return self.resolve(self.state_dir)

    @property
    def warehouse_path(self) -> Path:
        return self.resolve(self.warehouse.path)

    @property
    def published_dir(self) -> Path:
        return self.state / "published"

    @property
    def locks_dir(self) -> Path:
        """Where the stack's named locks live (see millpond.locks)."""
        return self.state / "locks"

    @property
    def logs_dir(self) -> Path:
        return self.state / "logs"

    @property
    def dbt_project_dir(self) -> Path:
        return self.resolve(self.dbt.project_dir)

    @property
    def dbt_profiles_dir(self) -> Path:
        return self.resolve(self.dbt.profiles_dir or self.dbt.project_dir)

    @property
    def lake_url(self) -> str:
        """The lake URL with a relative file:// path made absolute."""
        if self.lake.url.startswith("file://"):
            return "file://" + str(self.resolve(self.lake.url.removeprefix("file://")))
        return self.lake.url

    def secrets(self) -> list[str]:
        """Every secret value this config holds, for log masking."""
        found = [self.lake.access_key_id, self.lake.secret_access_key]
        found += [url_password(self.metadata.url), url_password(self.prefect.api_url)]
        return [s for s in found if s]

    def masked(self) -> dict[str, Any]:
        """The effective config as plain data, with passwords and keys replaced by ***."""
        data = self.model_dump(mode="json")
        data["lake"]["access_key_id"] = MASK if self.lake.access_key_id else None
        data["lake"]["secret_access_key"] = MASK if self.lake.secret_access_key else None
        data["metadata"]["url"] = mask_url(self.metadata.url)
        if self.prefect.api_url:
            data["prefect"]["api_url"] = mask_url(self.prefect.api_url)
        return mask_secret_keys(data)


def interpolate(value: Any, env: dict[str, str], where: str = "") -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string of a parsed YAML document."""
    if isinstance(value, dict):
        return {
            k: interpolate(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [interpolate(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable ${{{name}}} is not set")

    return _VAR.sub(substitute, value)


def apply_env_overrides(data: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Apply MILLPOND_<KEY>__<SUBKEY>=value overrides to known top-level keys."""
    known = set(MillpondConfig.model_fields)
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV:
            continue
        path = name.removeprefix(ENV_PREFIX).lower().split("__")
        if path[0] not in known:
            continue
        target = data
        for key in path[:-1]:
            child = target.get(key)
            if not isinstance(child, dict):
                child = {}
                target[key] = child
            target = child
        target[path[-1]] = _override_value(name, raw)
    return data


def _override_value(name: str, raw: str) -> Any:
    """Lists and mappings are YAML; everything else stays text (pydantic converts numbers and
    booleans where a field wants them), so a cron `*/15 * * * *` or a key `0123` survives."""
    if raw.lstrip().startswith(("[", "{")):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{name}: not a valid YAML list or mapping: {exc}") from None
    return None if raw in ("null", "~") else raw


def format_validation_error(error: ValidationError, data: dict[str, Any], source: str) -> str:
    """One line per problem: file, key path, the value found, what was expected."""
    lines = [f"{source}: invalid configuration"]
    for problem in error.errors():
        path = ".".join(str(p) for p in problem["loc"] if not str(p).startswith("function-"))
        path = path.replace(".files.", ".")  # discriminated unions add the tag to the path
        found = MASK if SECRET_NAME.search(path) else _lookup(data, problem["loc"])
        found = mask_url(found) if isinstance(found, str) else found  # no passwords in errors
        shown = "missing" if problem["type"] == "missing" else f"got {found!r}"
        lines.append(f"  {path}: {problem['msg']} ({shown})")
    return "\n".join(lines)


def _lookup(data: Any, loc: tuple[Any, ...]) -> Any:
    for key in loc:
        if (isinstance(data, dict) and key in data) or (
            isinstance(data, list) and isinstance(key, int) and key < len(data)
        ):
            data = data[key]
        elif key == "files":
            continue
        else:
            return None
    return data


def find_config(path: Path | str | None = None) -> Path:
    """The config file to use: an explicit path, $MILLPOND_CONFIG, or ./millpond.yml."""
    chosen = Path(path or os.environ.get("MILLPOND_CONFIG") or DEFAULT_CONFIG_FILE)
    if not chosen.is_file():
        raise ConfigError(f"{chosen}: config file not found (set --config or MILLPOND_CONFIG)")
    return chosen.resolve()


def load_config(
    path: Path | str | None = None, env: dict[str, str] | None = None
) -> MillpondConfig:
    """Read, interpolate, override and validate the stack's config."""
    config_file = find_config(path)
    env = dict(os.environ if env is None else env)
    try:
        data = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_file}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{config_file}: expected a mapping of keys at the top level")
    data = interpolate(data, env)
    data = apply_env_overrides(data, env)
    data["root"] = str(config_file.parent)
    try:
        return MillpondConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, data, str(config_file))) from None
