"""Recording a run whose config cannot be read, from the parts of it that can.

A flow run of the deployment (the schedule, the Prefect UI, `POST /runs`) reads millpond.yml
afresh as it starts. When that fails (a `${VAR}` the deployment's process does not have, a
key mistyped since `millpond ui` started), there is no validated config to find the ledger
with, and the run would leave no trace but a failed flow run in Prefect. So the sections a
run's record needs (`metadata`, `state_dir`, `project`, `serve`, each `notify` webhook) are
read on their own, each kept only when it interpolates and validates by itself (a file that
is gone or not YAML leaves its folder's defaults and the MILLPOND_* overrides), and the run is
written to that ledger as `failed` with the reason (secrets masked) and told to the webhooks
that could be read. Only when the ledger itself cannot be read (a `${VAR}` in
`metadata.url`, a bad `state_dir`) is the run left unrecorded: a default would be another
ledger than the user's. The error logged (the flow run's log and state) says so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from millpond.core.config import MillpondConfig, config_model
from millpond.core.config_file import DEFAULT_CONFIG_FILE, ConfigError, interpolate
from millpond.core.config_loading import apply_env_overrides, load_config
from millpond.core.logs import logger
from millpond.core.masking import env_secrets, mask, register_secrets
from millpond.metadata.buffer import buffer_path
from millpond.metadata.db import migrate, resolve_url
from millpond.metadata.ledger import Ledger
from millpond.metadata.records import RunQueued
from millpond.runtime.lifecycle import close_run

# What a run's record and its notifications need, in the order they are tried.
SECTIONS = ("project", "state_dir", "metadata", "serve", "notify")
# Sections whose defaults would point at another ledger than the one the user configured.
WHERE_THE_LEDGER_IS = ("state_dir", "metadata")


class NoLedger(Exception):
    """The readable part of the config names no ledger this run can be recorded in."""


def partial_config(path: Path | str | None, env: dict[str, str]) -> MillpondConfig:
    """The config with only the sections of SECTIONS that are usable on their own, the rest
    left at their defaults. A file that is missing or not YAML leaves the defaults (and the
    MILLPOND_* overrides) of its folder. Raises NoLedger when `metadata` or `state_dir` is
    written but unusable: their defaults would name another ledger than the user's."""
    config_file = Path(path or env.get("MILLPOND_CONFIG") or DEFAULT_CONFIG_FILE).resolve()
    try:
        data = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, ValueError):
        data = None
    data = data if isinstance(data, dict) else {}
    model = config_model()
    kept: dict[str, Any] = {"root": str(config_file.parent)}

    def valid(candidate: dict[str, Any]) -> bool:
        try:
            model.model_validate(candidate)
        except ValidationError:
            return False
        return True

    for section in SECTIONS:
        value = _section(section, data, env)
        if section == "notify" and isinstance(value, list):
            kept["notify"] = [hook for hook in value if valid({**kept, "notify": [hook]})]
        elif value is not None and valid({**kept, section: value}):
            kept[section] = value
        elif section in WHERE_THE_LEDGER_IS and (value is not None or section in data):
            raise NoLedger(f"{config_file}: `{section}` cannot be read, so neither can the ledger")
    return model.model_validate(kept)


def _section(name: str, data: dict[str, Any], env: dict[str, str]) -> Any:
    """One section of the file, interpolated, with its MILLPOND_* overrides (which stand alone
    when the file's section cannot be read); None when it cannot be had. Each webhook of
    `notify` is read on its own: one unreadable hook drops only itself."""
    prefix = f"MILLPOND_{name.upper()}"
    overrides = {k: v for k, v in env.items() if k == prefix or k.startswith(prefix + "__")}
    if overrides:
        try:
            base = {name: interpolate(data[name], env, name)} if name in data else {}
        except ConfigError:
            base = {}
        try:
            return apply_env_overrides(base, overrides).get(name)
        except ConfigError:
            return None
    if name not in data:
        return None
    if name == "notify" and isinstance(data[name], list):
        hooks = []
        for index, hook in enumerate(data[name]):
            try:
                hooks.append(interpolate(hook, env, f"notify[{index}]"))
            except ConfigError:
                continue
        return hooks
    try:
        return interpolate(data[name], env, name)
    except ConfigError:
        return None


class ConfigUnreadable(Exception):
    """The run's config cannot be read; the run is recorded failed (where a ledger could be
    found). The message is masked, fit for the flow run's state."""


def load_or_record(
    run_id: str, trigger: str | None, flow_run_id: str | None, env: dict[str, str]
) -> MillpondConfig:
    """The run's config, as a flow run of the deployment reads it (`env`: the serving
    process's environment); raises ConfigUnreadable after recording the run failed."""
    try:
        config = load_config(env.get("MILLPOND_CONFIG"), env)
    except Exception as exc:
        error = f"cannot read the config: {exc}"
        recorded = record_unstartable(run_id, trigger, flow_run_id, error, env=env)
        where = "" if recorded else " (and no ledger could be found to record it in)"
        raise ConfigUnreadable(mask(error) + where) from None
    register_secrets(config.secrets() + env_secrets(env))
    return config


def record_unstartable(
    run_id: str,
    trigger: str | None,
    flow_run_id: str | None,
    error: str,
    config_path: Path | str | None = None,
    env: dict[str, str] | None = None,
) -> bool:
    """Record a run that failed before its config could be read as `failed` with `error`, in
    the ledger the readable part of the config names, and tell its webhooks; False when no
    ledger could be found (the error is logged either way)."""
    env = dict(os.environ if env is None else env)
    register_secrets(env_secrets(env))
    message = mask(error)
    logger.error(f"run {run_id}: {message}")
    try:
        config = partial_config(config_path, env)
        register_secrets(config.secrets())
        url = resolve_url(config.metadata.url, config.state, keep_running=True)
    except Exception as exc:  # NoLedger, an embedded server that cannot start
        logger.error(f"run {run_id} is not recorded in the ledger: {mask(str(exc))}")
        return False
    try:
        migrate(url)
    except Exception as exc:  # the ledger buffers locally, as a run's does
        logger.warning(f"metadata database unavailable, buffering records: {mask(str(exc))}")
    with Ledger(url, buffer_path(config.state, url)) as ledger:
        ledger.flush_buffer()
        ledger.write(RunQueued(run_id, "prefect", trigger, None, flow_run_id))
        close_run(config, ledger, run_id, "failed", message, [], 0)
    return True
