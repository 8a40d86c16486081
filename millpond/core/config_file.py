"""Finding `millpond.yml`, `${VAR}` interpolation and where the stack's state folder is,
with nothing heavier than PyYAML imported.

`millpond run-node` needs the state folder before anything else, to find the warm node worker
(millpond.cli.warm) while the validated config (millpond.core.config_loading, which imports
pydantic and every registered kind) costs over a second to build. `state_dir` resolves
`state_dir` the way the full config does: the file's value (or `MILLPOND_STATE_DIR`),
interpolated, relative to the config file's folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG_FILE = "millpond.yml"
DEFAULT_STATE_DIR = ".millpond"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A config file that cannot be used; the message says where and why."""


def referenced_vars(value: Any) -> set[str]:
    """The names of every ${VAR} a parsed YAML document reads."""
    if isinstance(value, dict):
        return {n for v in value.values() for n in referenced_vars(v)}
    if isinstance(value, list):
        return {n for v in value for n in referenced_vars(v)}
    return {m.group(1) for m in _VAR.finditer(value)} if isinstance(value, str) else set()


def find_config(path: Path | str | None = None) -> Path:
    """The config file to use: an explicit path, $MILLPOND_CONFIG, or ./millpond.yml."""
    chosen = Path(path or os.environ.get("MILLPOND_CONFIG") or DEFAULT_CONFIG_FILE)
    if not chosen.is_file():
        raise ConfigError(f"{chosen}: config file not found (set --config or MILLPOND_CONFIG)")
    return chosen.resolve()


def interpolate(
    value: Any,
    env: dict[str, str],
    where: str = "",
    unset: dict[tuple[Any, ...], str] | None = None,
    at: tuple[Any, ...] = (),
    read: dict[tuple[Any, ...], str] | None = None,
) -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string of a parsed YAML document.

    A ${VAR} that is not set is an error, unless `unset` is given: then it is left as it is
    and recorded there (key path as a tuple -> variable), for commands that need only part
    of the config (`millpond down` must work in a shell without the sources' secrets).
    `read`, when given, gets the key paths whose value took an environment variable's (a
    command node's `env` treats those as secrets)."""
    if isinstance(value, dict):
        return {
            k: interpolate(v, env, f"{where}.{k}" if where else str(k), unset, (*at, k), read)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            interpolate(v, env, f"{where}[{i}]", unset, (*at, i), read) for i, v in enumerate(value)
        ]
    if not isinstance(value, str):
        return value
    from_env = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal from_env
        name, default = match.group(1), match.group(2)
        if name in env:
            from_env = True
            return env[name]
        if default is not None:
            return default
        if unset is not None:
            unset.setdefault(at, name)
            return match.group(0)
        raise ConfigError(f"{where}: environment variable ${{{name}}} is not set")

    result = _VAR.sub(substitute, value)
    if from_env and read is not None:
        read[at] = result
    return result


def state_dir(config_file: Path, env: dict[str, str]) -> Path:
    """The state folder `load_config(config_file, env).state` names; raises ConfigError
    (or OSError, yaml.YAMLError) where the full config would not load either."""
    data = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    value = data.get("state_dir", DEFAULT_STATE_DIR) if isinstance(data, dict) else None
    value = env.get("MILLPOND_STATE_DIR", value)
    value = interpolate(value, env, "state_dir")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{config_file}: state_dir must be a path")
    path = Path(value)
    return path if path.is_absolute() else (config_file.parent / path).resolve()
