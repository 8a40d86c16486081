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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from millpond.core.config import MillpondConfig
from millpond.core.locks import dbt_parse_lock
from millpond.core.logs import logger
from millpond.core.masking import register_secrets, registered
from millpond.core.registry import Target
from millpond.nodes.dbt import manifest_cache
from millpond.nodes.dbt.profile import GENERATED_TARGET, profile_name, write_profile
from millpond.nodes.dbt.secrets import export_to_dbt, scrub_tree

_DBT_LOCK = threading.Lock()
PASSING = {"success", "pass", "no-op"}
FAILING_TESTS = {"fail", "error"}
# What a node records as its tests: data tests, unit tests, and the freshness of the sources
# it reads (millpond.nodes.dbt.freshness).
TEST_TYPES = {"test", "unit_test", "source"}


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
# The fingerprint of the project files, profile and vars the published manifest was parsed
# from: while it matches, the graph is built from manifest.json without importing dbt.
MANIFEST_KEY = "manifest.key"
# Folders of a dbt project that dbt writes itself, or that hold no project input.


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
        return [r for r in self.results if r.resource_type in TEST_TYPES]

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
        self._decode_saved: Callable[[], Any] | None = None  # the cached parse, not decoded yet
        self._manifest_lock = threading.Lock()
        self.manifest_json: dict[str, Any] | None = None
        if not (self.project_dir / "dbt_project.yml").is_file():
            raise DbtError(
                f"{self.project_dir}: no dbt_project.yml (dbt.project_dir in millpond.yml)"
            )
        self.generated_profile = config.dbt_settings.profiles_dir is None
        if self.generated_profile and config.dbt_settings.target:
            logger.warning(
                f"dbt.target {config.dbt_settings.target!r} is ignored: millpond generates the "
                "profile for warehouse.target (set dbt.profiles_dir to use your own profiles)"
            )
        if self.generated_profile:
            write_profile(self.profiles_dir, profile_name(self.project_dir), target.dbt_output())
        # dbt vars named like secrets or listed in dbt.secret_vars: hidden from dbt's logs
        # and scrubbed from its files (millpond.nodes.dbt.secrets), whoever built the config.
        register_secrets(config.secrets())
        self._set_env()
        if registered() and self.target_dir.is_dir():
            # What a killed process left before it could scrub (parses write under this lock).
            with dbt_parse_lock(config.locks_dir):
                self.scrub()

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
        export_to_dbt()

    def scrub(self, since: float | None = None) -> None:
        """Take the secrets dbt rendered into SQL (a secret var, a secret `env_var()`) out of
        the files it wrote under the target folder since `since` (compiled, run, msgpack,
        JSON)."""
        scrub_tree(self.target_dir, since=since)

    def common_args(self) -> list[str]:
        """What every dbt command of this project is given: project, profile, target, vars."""
        args = ["--project-dir", str(self.project_dir), "--profiles-dir", str(self.profiles_dir)]
        if self.generated_profile:
            args += ["--target", GENERATED_TARGET]
        elif self.config.dbt_settings.target:
            args += ["--target", self.config.dbt_settings.target]
        if self.config.dbt_settings.vars:
            args += ["--vars", json.dumps(self.config.dbt_settings.vars)]
        return args

    @property
    def manifest_path(self) -> Path:
        return self.target_dir / "manifest.json"

    def project_key(self) -> str:
        """A digest of everything a parse reads (manifest_cache.fingerprint): the project's
        files, the profile, the vars, the `env_var()`s it names, the target's env, dbt's version."""
        return manifest_cache.fingerprint(
            self.project_dir,
            self.profiles_dir,
            self.common_args(),
            self.target.dbt_env(),
            skip=[self.config.state],
            location=self.config.state,
        )

    def graph_manifest(self) -> dict[str, Any]:
        """manifest.json for building the graph: the published one while the project is
        unchanged since it was parsed (no dbt import, no parse), else a fresh parse."""
        state = self.config.state / "dbt"
        key = self.project_key()
        key_file, published = state / MANIFEST_KEY, state / PUBLISHED_MANIFEST
        try:
            if key_file.read_text() == key:
                self.manifest_json = json.loads(published.read_text())
                return self.manifest_json
        except (OSError, ValueError):
            pass
        manifest = self.parse()
        handle, tmp = tempfile.mkstemp(dir=state, prefix=".key-")
        with os.fdopen(handle, "w") as out:
            out.write(key)
        os.replace(tmp, key_file)
        return manifest

    def manifest_tests(self) -> dict[str, str]:
        """Test name -> unique_id (data and unit tests), from the manifest the graph was
        built from."""
        manifest = self.manifest_json or {}
        nodes = manifest.get("nodes", {})
        found = {r["name"]: uid for uid, r in nodes.items() if r["resource_type"] == "test"}
        found.update({r["name"]: uid for uid, r in manifest.get("unit_tests", {}).items()})
        return found

    def parse(self) -> dict[str, Any]:
        """Parse the project, or reuse the last parse while the project is unchanged
        (manifest_cache: no dbt parse per Airflow task); returns manifest.json."""
        # dbt rewrites manifest.json in place: parallel `run-node` processes (Airflow) must not
        # read it half-written, so parsing and reading are exclusive across processes too.
        with _DBT_LOCK, dbt_parse_lock(self.config.locks_dir):
            key = self.project_key()
            cached = manifest_cache.load(self.target_dir, key)
            if cached is not None:
                self._decode_saved, text = cached
            else:
                self._manifest, text = self._parse_with_dbt(), self.manifest_path.read_text()
                manifest_cache.save(self.target_dir, key)
            publish_manifest(self.config.state / "dbt" / PUBLISHED_MANIFEST, text)
            self.manifest_json = json.loads(text)
            return self.manifest_json

    def _parse_with_dbt(self) -> Any:
        from dbt.cli.main import dbtRunner

        manifest_cache.forget(self.target_dir)
        export_to_dbt()
        started = time.time()
        try:
            result = dbtRunner().invoke(["--quiet", "parse", *self.common_args()])
        finally:
            self.scrub(started)  # before manifest_cache copies the parse anywhere
        _drop_root_stream_handlers()
        if not result.success or result.result is None:
            raise DbtError(f"dbt parse failed in {self.project_dir}: {result.exception}")
        return result.result

    @property
    def manifest(self) -> Any:
        """dbt's parsed Manifest object, parsed (or decoded from the cache) on first use, once
        for all the threads that ask at the same time."""
        with self._manifest_lock:
            if self._manifest is None and self._decode_saved is None:
                self.parse()
            if self._manifest is None and self._decode_saved is not None:
                try:
                    self._manifest = self._decode_saved()
                except Exception as exc:  # half-written by an older millpond: parse afresh
                    logger.debug(f"saved dbt manifest not usable ({exc}): parsing")
                    self._decode_saved = None
                    self._manifest = self._parse_fresh()
            return self._manifest

    def _parse_fresh(self) -> Any:
        with _DBT_LOCK, dbt_parse_lock(self.config.locks_dir):
            manifest = self._parse_with_dbt()
            manifest_cache.save(self.target_dir, self.project_key())
            return manifest

    def invoke(
        self,
        command: list[str],
        args: list[str],
        callbacks: list[Callable[[Any], None]] | None = None,
        global_flags: tuple[str, ...] = ("--quiet",),
    ) -> Any:
        """One dbt command in this process over the parsed manifest, with the project's own
        arguments (project, profile, target, vars), so `build`, `ls` and `docs generate` all
        see the project exactly as the graph was built from it. One at a time: dbt keeps
        process-wide state. The target's connection dbt opened is released after it."""
        from dbt.cli.main import dbtRunner

        manifest = self.manifest
        argv = [*global_flags, *command, *self.common_args(), *args]
        with _DBT_LOCK:
            export_to_dbt()
            started = time.time()
            try:
                return dbtRunner(manifest=manifest, callbacks=callbacks or []).invoke(argv)
            finally:
                self.target.release()
                self.scrub(started)
                _drop_root_stream_handlers()

    def build(
        self,
        select: list[str],
        full_refresh: bool = False,
        on_result: Callable[[DbtResult], None] | None = None,
    ) -> DbtBuild:
        """`dbt build` of exactly these resources (one node's model and tests, or a wave of
        nodes), in dependency order; `on_result` hears of each resource as dbt finishes it."""
        args = ["--select", *select, "--indirect-selection", "empty", "--no-write-json"]
        args += ["--full-refresh"] if full_refresh else []
        callbacks = [_finished_listener(on_result)] if on_result else []
        outcome = self.invoke(["build"], args, callbacks=callbacks)
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


def _finished_listener(on_result: Callable[[DbtResult], None]) -> Callable[[Any], None]:
    """A dbt event callback passing on each NodeFinished as a DbtResult.

    A microbatch model finishes once per batch (each batch is announced by LogStartBatch,
    with the model's node info) and once as a whole: only the whole is passed on, so the
    node is settled when every batch is done. It never raises: dbt turns an exception from a
    callback into an error of the node."""
    open_batches: dict[str, int] = {}
    lock = threading.Lock()

    def listen(event: Any) -> None:
        name = event.info.name
        if name not in ("NodeFinished", "LogStartBatch"):
            return
        try:
            uid = event.data.node_info.unique_id
            with lock:
                if name == "LogStartBatch":
                    open_batches[uid] = open_batches.get(uid, 0) + 1
                    return
                if open_batches.get(uid):
                    open_batches[uid] -= 1  # one batch of a microbatch model
                    return
            on_result(result_of_event(event.data))
        except Exception as exc:  # pragma: no cover - a bug here must not fail dbt's node
            logger.error(f"dbt event not handled: {type(exc).__name__}: {exc}")

    return listen


def result_of_event(data: Any) -> DbtResult:
    """A NodeFinished event's node and run result, as the final RunResult would give them:
    failures only for tests that ran, no message for a plain pass."""
    info, result = data.node_info, data.run_result
    resource_type = str(info.resource_type)
    status = str(result.status)
    ran_test = resource_type in ("test", "unit_test") and status not in ("skipped", "error")
    response = dict(result.adapter_response) if result.adapter_response else {}
    rows = response.get("rows_affected")
    return DbtResult(
        unique_id=info.unique_id,
        name=info.node_name,
        resource_type=resource_type,
        status=status,
        failures=int(result.num_failures) if ran_test else None,
        message=result.message or None,
        rows_affected=int(rows) if isinstance(rows, int | float) else None,
    )
