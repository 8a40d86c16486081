"""Recording a run whose config cannot be read, from the parts of it that can.

A flow run of the deployment (the schedule, the Prefect UI, `POST /runs`) reads millpond.yml
afresh as it starts. When that fails (a `${VAR}` the deployment's process does not have, a
key mistyped since `millpond ui` started), there is no validated config to find the ledger
with, and the run would leave no trace but a failed flow run in Prefect. So the sections a
run's record needs (`metadata`, `state_dir`, `project`, `serve`, each `notify` webhook) are
read on their own, each kept only when it interpolates and validates by itself, and the run
is written to that ledger as `failed` with the reason (secrets masked) and told to the
webhooks that could be read. Only when not even the ledger can be found (no config file,
not YAML) is the run left unrecorded, and the error says so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from metadata.buffer import buffer_path
from metadata.db import migrate, resolve_url
from metadata.ledger import Ledger
from millpond.core.config import MillpondConfig, config_model
from millpond.core.config_file import ConfigError, find_config, interpolate
from millpond.core.config_loading import apply_env_overrides
from millpond.core.logs import logger
from millpond.core.masking import env_secrets, mask, register_secrets
from millpond.runtime.lifecycle import close_run

# What a run's record and its notifications need, in the order they are tried.
SECTIONS = ("project", "state_dir", "metadata", "serve", "notify")


def partial_config(path: Path | str | None, env: dict[str, str]) -> MillpondConfig | None:
    """The config with only the sections of SECTIONS that are usable on their own (the rest
    left at their defaults); None when there is no config file to read at all."""
    try:
        config_file = find_config(path)
        data = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except (ConfigError, OSError, yaml.YAMLError):
        return None
    if not isinstance(data, dict):
        return None
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
            hooks = [hook for hook in value if valid({**kept, "notify": [hook]})]
            kept["notify"] = hooks
        elif value is not None and valid({**kept, section: value}):
            kept[section] = value
    return model.model_validate(kept)


def _section(name: str, data: dict[str, Any], env: dict[str, str]) -> Any:
    """One section of the file, interpolated and with its MILLPOND_* overrides; None when it
    cannot be (each webhook of `notify` on its own: one unreadable hook drops only itself)."""
    prefix = f"MILLPOND_{name.upper()}"
    overrides = {k: v for k, v in env.items() if k == prefix or k.startswith(prefix + "__")}
    if name not in data and not overrides:
        return None
    try:
        if name == "notify" and isinstance(data.get(name), list):
            hooks = []
            for index, hook in enumerate(data[name]):
                try:
                    hooks.append(interpolate(hook, env, f"notify[{index}]"))
                except ConfigError:
                    continue
            return hooks
        section = {name: interpolate(data[name], env, name)} if name in data else {}
        return apply_env_overrides(section, overrides).get(name)
    except ConfigError:
        return None


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
    register_secrets(env_secrets())
    message = mask(error)
    logger.error(f"run {run_id}: {message}")
    config = partial_config(config_path, env)
    if config is None:
        logger.error(f"run {run_id} is not in the ledger: no readable config names one")
        return False
    register_secrets(config.secrets())
    try:
        url = resolve_url(config.metadata.url, config.state, keep_running=True)
    except Exception as exc:  # the embedded server cannot start, a URL that is not one
        logger.error(f"run {run_id} is not in the ledger: {mask(str(exc))}")
        return False
    try:
        migrate(url)
    except Exception as exc:  # the ledger buffers locally, as a run's does
        logger.warning(f"metadata database unavailable, buffering records: {mask(str(exc))}")
    with Ledger(url, buffer_path(config.state, url)) as ledger:
        ledger.flush_buffer()
        ledger.queue_run(run_id, "prefect", trigger, None, flow_run_id)
        close_run(config, ledger, run_id, "failed", message, [], 0)
    return True
