"""Reading `millpond.yml`: the three steps where users otherwise get surprised.

1. `${VAR}` / `${VAR:-default}` interpolation, so secrets live in the environment, not the file;
2. `MILLPOND_<KEY>__<SUBKEY>=value` environment overrides (values parsed as YAML scalars), an
   override naming no key refused with the nearest one;
3. validation against the kinds' model (millpond.core.config), with errors that name the key
   path, the offending value (masked when secret) and what was expected.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from millpond.core.config import (
    MillpondConfig,
    WarehouseBase,
    config_model,
    mask_urls,
)
from millpond.core.config_file import ConfigError, find_config, interpolate
from millpond.core.masking import MASK, is_secret_path, literal_secrets, mask_secret_keys

ENV_PREFIX = "MILLPOND_"
# Environment variables with the prefix that are not config overrides.
RESERVED_ENV = {"MILLPOND_CONFIG", "MILLPOND_RUN_ID", "MILLPOND_ATTEMPT", "MILLPOND_BIN"}


def apply_env_overrides(data: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Apply MILLPOND_<KEY>__<SUBKEY>=value overrides; one naming no key is an error that
    says the nearest key (a typo must not be ignored while the run goes on without it)."""
    known = set(MillpondConfig.model_fields) - {"root"}
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV:
            continue
        path = name.removeprefix(ENV_PREFIX).lower().split("__")
        if len(path) == 1 and path[0] not in known:
            # Without __ it may be any variable of the team's (a ${MILLPOND_X} of the file,
            # a setting of the API); only a near miss of a key is taken for a typo.
            near = difflib.get_close_matches(path[0], sorted(known), n=1, cutoff=0.85)
            if near:
                raise ConfigError(
                    f"{name}: {path[0]!r} is not a key of millpond.yml; did you mean "
                    f"{ENV_PREFIX}{near[0].upper()}?"
                )
            continue
        problem = unknown_override_key(path)
        if problem:
            raise ConfigError(f"{name}: {problem}")
        target = data
        for key in path[:-1]:
            child = target.get(key)
            if not isinstance(child, dict):
                child = {}
                target[key] = child
            target = child
        target[path[-1]] = _override_value(name, raw)
    return data


def unknown_override_key(path: list[str]) -> str | None:
    """What is wrong with an override's key path (`["lake", "endpoint"]`), with the nearest
    valid key; None when every part names a key of millpond.yml (kinds' keys included)."""
    fields = _keys_of(config_model())
    for depth, key in enumerate(path):
        if fields is None:  # a free-form mapping (dbt.vars, a source's name): anything goes
            return None
        where = ".".join(path[:depth]) or "millpond.yml"
        if key not in fields:
            names = sorted(fields)
            near = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
            prefix = ENV_PREFIX + "__".join(p.upper() for p in path[:depth])
            hint = (
                f"; did you mean {prefix}{'__' if depth else ''}{near[0].upper()}?"
                if near
                else f" (keys: {', '.join(names)})"
            )
            return f"{key!r} is not a key of {where}{hint}"
        fields = _keys_of(fields[key])
    return None


def _keys_of(annotation: Any) -> dict[str, Any] | None:
    """The keys an annotation's mapping may hold, each with its own annotation; None for a
    free-form one. A dict of models (`sources`) takes any name, then that model's keys."""
    from typing import get_args, get_origin

    origin = get_origin(annotation)
    if origin is Annotated:
        return _keys_of(get_args(annotation)[0])
    if origin is Union or type(annotation).__name__ == "UnionType":
        keys: dict[str, Any] = {}
        for arg in get_args(annotation):
            keys = {**(_keys_of(arg) or {}), **keys}
        return keys or None
    if origin is dict:
        value = get_args(annotation)[1] if get_args(annotation) else Any
        inner = _keys_of(value)
        return None if inner is None else _AnyName(value)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        keys = {n: f.annotation for n, f in annotation.model_fields.items() if n != "root"}
        if issubclass(annotation, WarehouseBase):  # the short form: a section's keys
            for section in [k for k in keys if k != "target"]:
                keys = {**(_keys_of(keys[section]) or {}), **keys}
        return keys
    return None


class _AnyName(dict):  # type: ignore[type-arg]
    """Any key is valid at this level (a dict of models, e.g. `sources.<name>`); the level
    below has the model's keys."""

    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: Any) -> Any:
        return self.value


def _override_value(name: str, raw: str) -> Any:
    """Lists and mappings are YAML; everything else stays text (pydantic converts numbers and
    booleans where a field wants them), so a cron `*/15 * * * *` or a key `0123` survives."""
    if raw.lstrip().startswith(("[", "{")):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{name}: not a valid YAML list or mapping: {exc}") from None
    return None if raw in ("null", "~") else raw


_warned: set[str] = set()


def warn_literal_secrets(data: dict[str, Any], config_file: Path) -> None:
    """Say (once per process) where millpond.yml holds a secret written out: it still works,
    and is masked everywhere, but a file with secrets in it cannot be committed or shared."""
    from millpond.core.logs import logger

    dbt = data.get("dbt") if isinstance(data.get("dbt"), dict) else {}
    secret_vars = dbt.get("secret_vars") if isinstance(dbt.get("secret_vars"), list) else []
    for path in literal_secrets(data, [str(v) for v in secret_vars]):
        if f"{config_file}:{path}" in _warned:
            continue
        _warned.add(f"{config_file}:{path}")
        logger.warning(
            f"{config_file}: {path} holds a secret written in the file; read it from the "
            "environment instead (e.g. ${MY_SECRET}), so millpond.yml can be committed"
        )


def format_validation_error(error: ValidationError, data: dict[str, Any], source: str) -> str:
    """One line per problem: file, key path, the value found, what was expected."""
    lines = [f"{source}: invalid configuration"]
    # dbt vars are free-form and any may hold a secret (`dbt.secret_vars` may be the very
    # thing that is wrong): an error never shows their values.
    dbt = data.get("dbt") if isinstance(data.get("dbt"), dict) else {}
    every_var = list(dbt.get("vars") or {}) if isinstance(dbt.get("vars"), dict) else []
    for problem in error.errors():
        loc = _user_loc(problem["loc"], data)
        path = ".".join(str(p) for p in loc)
        found = MASK if is_secret_path(loc) else _lookup(data, loc)
        found = mask_urls(mask_secret_keys(found, loc, every_var))  # no secrets, nested or not
        shown = "missing" if problem["type"] == "missing" else f"got {found!r}"
        lines.append(f"  {path}: {problem['msg']} ({shown})")
    return "\n".join(lines)


def _user_loc(loc: tuple[Any, ...], data: dict[str, Any]) -> tuple[Any, ...]:
    """The key path as the user wrote it: without pydantic's validator names, the
    discriminator tag it adds after `sources.<name>`, and the target section that the short
    warehouse form (`warehouse: {target: postgres, url: ...}`) leaves out."""
    from millpond.core.registry import SOURCES

    kept = tuple(p for p in loc if not str(p).startswith(("function-", "model-")))
    if len(kept) > 2 and kept[0] == "sources" and kept[2] in SOURCES:
        kept = kept[:2] + kept[3:]
    if len(kept) > 2 and kept[0] == "warehouse" and _lookup(data, kept[:3]) is None:
        short = (kept[0], *kept[2:])
        if _lookup(data, short) is not None:
            kept = short
    return kept


def _lookup(data: Any, loc: tuple[Any, ...]) -> Any:
    for key in loc:
        if (isinstance(data, dict) and key in data) or (
            isinstance(data, list) and isinstance(key, int) and key < len(data)
        ):
            data = data[key]
        else:
            return None
    return data


def load_config(
    path: Path | str | None = None, env: dict[str, str] | None = None
) -> MillpondConfig:
    """Read, interpolate, override and validate the stack's config."""
    config_file = find_config(path)
    env = dict(os.environ if env is None else env)
    try:
        data = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_file}: not valid YAML: {exc}") from exc
    if data is None or data == {}:
        # Every key has a default, so an empty file would run (and publish) a stack nobody
        # described: say so instead.
        raise ConfigError(
            f"{config_file}: {'is empty' if data is None else 'has no keys'}; a millpond.yml "
            "says at least what to run, e.g. `sources:` and `dbt: {project_dir: transform}` "
            "(see docs/configuration.md, or copy the repository's millpond.yml)"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{config_file}: expected a mapping of keys at the top level")
    warn_literal_secrets(data, config_file)
    data = interpolate(data, env)
    data = apply_env_overrides(data, env)
    data["root"] = str(config_file.parent)
    try:
        return config_model().model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, data, str(config_file))) from None
