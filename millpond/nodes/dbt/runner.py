"""dbt, in-process: parse once, then build one graph node (a model and its tests) per call.

dbt is run through `dbtRunner` with the parsed manifest reused, never as a subprocess per
model (about 17x slower here). dbt keeps process-global state, so calls are serialized by a
lock; a dbt node also holds the target's writer lock.

Artifacts (manifest.json, logs) go under the state dir, not into the user's dbt project, so
any existing project can be pointed at without changing it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from millpond.core.config import MillpondConfig
from millpond.core.locks import file_lock
from millpond.core.logs import logger
from millpond.core.registry import Target
from millpond.nodes.dbt import manifest_cache
from millpond.nodes.dbt.profile import GENERATED_TARGET, profile_name, write_profile

_DBT_LOCK = threading.Lock()
PASSING = {"success", "pass", "no-op"}
FAILING_TESTS = {"fail", "error"}


def _drop_root_stream_handlers() -> None:
    """dbt attaches a bare stderr handler to the root logger; with it there, every library
    log line (Prefect's included) is printed raw and Prefect skips its own logging setup."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler:
            root.removeHandler(handler)


# The manifest as readers (the API) get it: replaced atomically after each parse, where dbt
# rewrites target/manifest.json in place and a reader may catch it half-written.
PUBLISHED_MANIFEST = "manifest.json"


def publish_manifest(path: Path, text: str) -> None:
    if path.is_file() and path.read_text() == text:
        return
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest-", suffix=".json")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)


class DbtError(Exception):
    """dbt could not run at all (bad project, profile or SQL)."""


@dataclass(frozen=True)
class DbtResult:
    """One dbt resource's outcome within a node's build."""

    unique_id: str
    name: str
    resource_type: str
    status: str
    failures: int | None
    message: str | None
    rows_affected: int | None


@dataclass
class DbtBuild:
    """Outcome of one node's `dbt build`: every resource it ran."""

    results: list[DbtResult] = field(default_factory=list)
    error: str | None = None

    @property
    def success(self) -> bool:
        return self.error is None and all(
            r.status in PASSING or r.status == "warn" for r in self.results
        )

    @property
    def tests(self) -> list[DbtResult]:
        return [r for r in self.results if r.resource_type == "test"]

    def failure_message(self) -> str:
        if self.error:
            return self.error
        bad = [r for r in self.results if r.status not in PASSING and r.status != "warn"]
        return "; ".join(f"{r.name}: {r.status} ({r.message or 'no message'})" for r in bad)


class DbtProject:
    """A dbt project as millpond runs it: paths, env, parsed manifest, builds."""

    def __init__(self, config: MillpondConfig, target: Target) -> None:
        self.config = config
        self.target = target
        self.project_dir = config.dbt_project_dir
        self.profiles_dir = config.dbt_profiles_dir
        self.target_dir = config.state / "dbt" / "target"
        self._manifest: Any = None
        if not (self.project_dir / "dbt_project.yml").is_file():
            raise DbtError(
                f"{self.project_dir}: no dbt_project.yml (dbt.project_dir in millpond.yml)"
            )
        self.generated_profile = config.dbt.profiles_dir is None
        if self.generated_profile and config.dbt.target:
            logger.warning(
                f"dbt.target {config.dbt.target!r} is ignored: millpond generates the profile "
                "for warehouse.target (set dbt.profiles_dir to use your own profiles)"
            )
        if self.generated_profile:
            write_profile(self.profiles_dir, profile_name(self.project_dir), target.dbt_output())
        self._set_env()

    def _set_env(self) -> None:
        """Process-wide settings dbt reads from the environment.

        dbt's own log file stays at info level: at debug it writes every flag, `--vars`
        included, so a var filled from `${MY_API_TOKEN}` would sit in plain text in dbt.log."""
        os.environ.update(self.target.dbt_env())
        os.environ["DBT_TARGET_PATH"] = str(self.target_dir)
        os.environ["DBT_LOG_PATH"] = str(self.config.state / "dbt" / "logs")
        os.environ["DBT_LOG_LEVEL_FILE"] = "info"
        os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        os.environ.setdefault("DO_NOT_TRACK", "1")
        os.environ.setdefault("DBT_PARTIAL_PARSE", "true")

    def _common_args(self) -> list[str]:
        args = ["--project-dir", str(self.project_dir), "--profiles-dir", str(self.profiles_dir)]
        if self.generated_profile:
            args += ["--target", GENERATED_TARGET]
        elif self.config.dbt.target:
            args += ["--target", self.config.dbt.target]
        if self.config.dbt.vars:
            args += ["--vars", json.dumps(self.config.dbt.vars)]
        return args

    @property
    def manifest_path(self) -> Path:
        return self.target_dir / "manifest.json"

    def parse(self) -> dict[str, Any]:
        """Parse the project, or reuse the last parse while the project is unchanged
        (manifest_cache: no dbt parse per Airflow task); returns manifest.json."""
        # dbt rewrites manifest.json in place: parallel `run-node` processes (Airflow) must not
        # read it half-written, so parsing and reading are exclusive across processes too.
        lock = self.config.locks_dir / "dbt-parse.lock"
        with _DBT_LOCK, file_lock(lock, "dbt parse"):
            key = manifest_cache.fingerprint(
                self.project_dir,
                self.profiles_dir,
                self._common_args(),
                self.target.dbt_env(),
                skip=[self.config.state],
            )
            cached = manifest_cache.load(self.target_dir, key)
            if cached is not None:
                self._manifest, text = cached
            else:
                self._manifest, text = self._parse_with_dbt(), self.manifest_path.read_text()
                manifest_cache.save(self.target_dir, key)
            publish_manifest(self.config.state / "dbt" / PUBLISHED_MANIFEST, text)
            return json.loads(text)

    def _parse_with_dbt(self) -> Any:
        from dbt.cli.main import dbtRunner

        manifest_cache.forget(self.target_dir)
        result = dbtRunner().invoke(["--quiet", "parse", *self._common_args()])
        _drop_root_stream_handlers()
        if not result.success or result.result is None:
            raise DbtError(f"dbt parse failed in {self.project_dir}: {result.exception}")
        return result.result

    def build(self, select: list[str], full_refresh: bool = False) -> DbtBuild:
        """`dbt build` of exactly these resources (a model and its tests), in dependency order;
        `full_refresh` is dbt's `--full-refresh` (incremental models and seeds rebuilt)."""
        from dbt.cli.main import dbtRunner

        if self._manifest is None:
            self.parse()
        args = [
            "--quiet",
            "build",
            *self._common_args(),
            "--select",
            *select,
            "--indirect-selection",
            "empty",
            "--no-write-json",
        ]
        if full_refresh:
            args.append("--full-refresh")
        with _DBT_LOCK:
            try:
                outcome = dbtRunner(manifest=self._manifest).invoke(args)
            finally:
                self.target.release()
                _drop_root_stream_handlers()
        build = DbtBuild()
        run = outcome.result
        for item in getattr(run, "results", None) or []:
            node = item.node
            build.results.append(
                DbtResult(
                    unique_id=node.unique_id,
                    name=node.name,
                    resource_type=str(node.resource_type),
                    status=str(item.status),
                    failures=item.failures,
                    message=item.message,
                    rows_affected=(item.adapter_response or {}).get("rows_affected"),
                )
            )
        if outcome.exception is not None:
            build.error = f"dbt failed: {outcome.exception}"
        elif not build.results:
            build.error = f"dbt selected nothing for {select}"
        for r in build.results:
            logger.debug(f"dbt {r.resource_type} {r.name}: {r.status} {r.message or ''}")
        return build
