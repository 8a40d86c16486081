"""Reading `millpond.yml`: the three steps where users otherwise get surprised.

1. `${VAR}` / `${VAR:-default}` interpolation, so secrets live in the environment, not the file;
2. `MILLPOND_<KEY>__<SUBKEY>=value` environment overrides (values parsed as YAML scalars), an
   override naming no key refused with the nearest one, and so is a key spelt with one
   underscore (`MILLPOND_PREFECT_PORT`) that the file does not read as a ${VAR};
3. validation against the kinds' model (millpond.core.config), with errors that name the key
   path, the variable that set it, the offending value (masked when secret), what was
   expected, and for a misspelt key the nearest valid one.

`load_config_lenient` is for commands that need only part of the config (`millpond down`,
`logs`, `status`): a ${VAR} that is not set stays unresolved instead of failing the load.
"""

from __future__ import annotations

import difflib
import itertools
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
from millpond.core.config_file import ConfigError, find_config, interpolate, referenced_vars
from millpond.core.masking import MASK, is_secret_path, literal_secrets, mask_secret_keys

ENV_PREFIX = "MILLPOND_"
# Environment variables with the prefix that are not config overrides.
RESERVED_ENV = {"MILLPOND_CONFIG", "MILLPOND_RUN_ID", "MILLPOND_ATTEMPT", "MILLPOND_BIN"}
# Variables other tools read under a name that looks like a key spelt with one underscore:
# transform/profiles.yml (dbt run by hand) and what millpond sets for dbt itself.
OTHER_TOOLS_ENV = {
    "MILLPOND_WAREHOUSE_PATH",
    "MILLPOND_WAREHOUSE_PASSWORD",
    "MILLPOND_LAKE_S3_KEY_ID",
    "MILLPOND_LAKE_S3_SECRET",
}


def _positive_int(value: str) -> str | None:
    return None if value.strip().isdigit() and int(value) >= 1 else "a whole number >= 1"


# Settings read from the environment outside millpond.yml, checked when the config loads so a
# bad value is named here rather than failing deep inside a run.
ENV_SETTINGS = {
    "MILLPOND_LANDING_THREADS": (_positive_int, "DuckDB threads for landing; unset: the cores"),
}


def check_env_settings(env: dict[str, str]) -> None:
    """A bad MILLPOND_* setting outside millpond.yml is refused with what it must be."""
    for name, (check, meaning) in ENV_SETTINGS.items():
        if name in env:
            problem = check(env[name])
            if problem:
                raise ConfigError(f"{name}={env[name]!r}: must be {problem} ({meaning})")


def apply_env_overrides(
    data: dict[str, Any],
    env: dict[str, str],
    read_by_file: set[str] | frozenset[str] = frozenset(),
    origins: dict[tuple[str, ...], str] | None = None,
) -> dict[str, Any]:
    """Apply MILLPOND_<KEY>__<SUBKEY>=value overrides; one naming no key is an error that
    says the nearest key (a typo must not be ignored while the run goes on without it).

    `read_by_file`: the ${VAR}s the file reads, which are never overrides; `origins` gets the
    key path each override set, so a validation error can name the variable."""
    known = set(MillpondConfig.model_fields) - {"root"}
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV:
            continue
        path = name.removeprefix(ENV_PREFIX).lower().split("__")
        if len(path) == 1 and path[0] not in known:
            # Without __ it may be any variable of the team's (a ${MILLPOND_X} of the file,
            # a setting of the API); a near miss of a key, or a key path spelt with single
            # underscores, is taken for a typo: it would be ignored while the run goes on.
            if name in read_by_file or name in OTHER_TOOLS_ENV or name in ENV_SETTINGS:
                continue
            meant = single_underscore_keys(path[0]) or _near_section_key(path[0])
            if meant:
                forms = " or ".join(ENV_PREFIX + "__".join(p).upper() for p in meant)
                raise ConfigError(
                    f"{name} is not read: an override separates keys with two underscores "
                    f"(did you mean {forms}?), and millpond.yml has no ${{{name}}}"
                )
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
        if origins is not None:
            origins[tuple(path)] = name
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


def single_underscore_keys(name: str) -> list[list[str]]:
    """The key paths (two levels or more) `name` spells when each of some of its underscores
    stands for `__`: `prefect_port` -> [["prefect", "port"]]; none for a name of the team's."""
    words = name.split("_")
    found = []
    for cuts in itertools.product([False, True], repeat=len(words) - 1):
        if not any(cuts):
            continue
        path, part = [], words[0]
        for word, cut in zip(words[1:], cuts, strict=True):
            if cut:
                path.append(part)
                part = word
            else:
                part += "_" + word
        path.append(part)
        if "" not in path and _is_key_path(path):
            found.append(path)
    return found


def _near_section_key(name: str) -> list[list[str]]:
    """`prefect_prot` -> [["prefect", "port"]]: a section's name, one underscore, and a near
    miss of one of its keys (both halves of the typo at once)."""
    sections = _keys_of(config_model()) or {}
    for section, annotation in sections.items():
        keys = _keys_of(annotation)
        if not name.startswith(section + "_") or keys is None or isinstance(keys, _AnyName):
            continue
        rest = name.removeprefix(section + "_")
        near = difflib.get_close_matches(rest, sorted(keys), n=1, cutoff=0.75)
        if near:
            return [[section, near[0]]]
    return []


def _is_key_path(path: list[str]) -> bool:
    """Every part names a key and every part but the last a section with keys of its own
    (a scalar key with something after it is no path)."""
    fields: Any = _keys_of(config_model())
    for key in path:
        if fields is None or key not in fields:
            return False
        last_free = isinstance(fields, _AnyName)
        fields = _keys_of(fields[key])
    return not last_free


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


class _AnyName(dict[str, Any]):
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


def _mapping(value: Any) -> dict[str, Any]:
    """`value` if it is a mapping, else an empty one (a raw file may hold anything)."""
    return value if isinstance(value, dict) else {}


_warned: set[str] = set()


def warn_literal_secrets(data: dict[str, Any], config_file: Path) -> None:
    """Say (once per process) where millpond.yml holds a secret written out: it still works,
    and is masked everywhere, but a file with secrets in it cannot be committed or shared."""
    from millpond.core.logs import logger

    dbt = _mapping(data.get("dbt"))
    secret_vars = dbt.get("secret_vars")
    if not isinstance(secret_vars, list):
        secret_vars = []
    for path in literal_secrets(data, [str(v) for v in secret_vars]):
        if f"{config_file}:{path}" in _warned:
            continue
        _warned.add(f"{config_file}:{path}")
        logger.warning(
            f"{config_file}: {path} holds a secret written in the file; read it from the "
            "environment instead (e.g. ${MY_SECRET}), so millpond.yml can be committed"
        )


def format_validation_error(
    error: ValidationError,
    data: dict[str, Any],
    source: str,
    origins: dict[tuple[str, ...], str] | None = None,
) -> str:
    """One line per problem: file, key path, the value found, what was expected; for a key
    that does not exist, the nearest valid one; for a value an override set, its variable."""
    lines = [f"{source}: invalid configuration"]
    # dbt vars are free-form and any may hold a secret (`dbt.secret_vars` may be the very
    # thing that is wrong): an error never shows their values.
    dbt = _mapping(data.get("dbt"))
    every_var = list(dbt.get("vars") or {}) if isinstance(dbt.get("vars"), dict) else []
    for problem in error.errors():
        loc = _user_loc(problem["loc"], data)
        path = ".".join(str(p) for p in loc)
        found = MASK if is_secret_path(loc) else _lookup(data, loc)
        found = mask_urls(mask_secret_keys(found, loc, every_var))  # no secrets, nested or not
        shown = "missing" if problem["type"] == "missing" else f"got {found!r}"
        variable = next(
            (v for p, v in (origins or {}).items() if tuple(str(x) for x in loc[: len(p)]) == p),
            None,
        )
        if variable:
            shown += f", set by {variable}"
        if not path:  # a rule over several keys: its message names them
            lines.append(f"  {problem['msg'].removeprefix('Value error, ')}")
        elif problem["type"] == "extra_forbidden":
            lines.append(f"  {path}: {_unknown_key(loc, data)} ({shown})")
        elif problem["type"] == "union_tag_invalid":  # e.g. a kind `millpond init` left to fill
            kind = problem["ctx"]["tag"]
            lines.append(
                f"  {path}.{problem['ctx']['discriminator'].strip(chr(39))}: {kind!r} is not a "
                f"kind here; choose one of {problem['ctx']['expected_tags']}"
            )
        else:
            lines.append(f"  {path}: {problem['msg']} ({shown})")
    return "\n".join(lines)


def _unknown_key(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    """`not a key of prefect; did you mean prefect.port?`, else the keys there are."""
    parent, key = loc[:-1], str(loc[-1])
    keys = sorted(k for k in (_keys_at(parent, data) or {}) if not k.startswith("_"))
    where = ".".join(str(p) for p in parent) or "millpond.yml"
    near = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if near:
        return f"not a key of {where}; did you mean {'.'.join(map(str, (*parent, near[0])))}?"
    return f"not a key of {where} (keys: {', '.join(keys)})" if keys else f"not a key of {where}"


def _keys_at(parent: tuple[Any, ...], data: dict[str, Any]) -> dict[str, Any] | None:
    """The valid keys of the mapping at `parent` (as the user wrote it); under
    `sources.<name>`, those of that source's kind."""
    from millpond.core.registry import NODE_KINDS, SOURCES

    fields: Any = _keys_of(config_model())
    for depth, key in enumerate(parent):
        if isinstance(key, int):  # an item of a list: its keys are the item model's
            continue
        if fields is None or key not in fields:
            return None
        if depth == 1 and parent[0] == "sources":
            kind = _lookup(data, ("sources", key, "kind"))
            if isinstance(kind, str) and kind in SOURCES:
                fields = _keys_of(SOURCES.get(kind).config_model)
                continue
        if depth == 1 and parent[0] == "nodes":
            kind = _lookup(data, ("nodes", key, "kind"))
            model = NODE_KINDS.get(kind).config_model if kind in NODE_KINDS else None
            if isinstance(kind, str) and model is not None:
                fields = _keys_of(model)
                continue
        annotation = fields[key]
        fields = _keys_of(_list_item(annotation))
    return fields


def _list_item(annotation: Any) -> Any:
    """A list's item type (`notify: [..]` items are models), else the annotation."""
    from typing import get_args, get_origin

    if get_origin(annotation) is list and get_args(annotation):
        return get_args(annotation)[0]
    return annotation


def _user_loc(loc: tuple[Any, ...], data: dict[str, Any]) -> tuple[Any, ...]:
    """The key path as the user wrote it: without pydantic's validator names, the
    discriminator tag it adds after `sources.<name>`, and the target section that the short
    warehouse form (`warehouse: {target: postgres, url: ...}`) leaves out."""
    from millpond.core.registry import NODE_KINDS, SOURCES

    kept = tuple(p for p in loc if not str(p).startswith(("function-", "model-")))
    if (
        len(kept) > 2
        and kept[0] in ("sources", "nodes")
        and kept[2] in (SOURCES, NODE_KINDS)[kept[0] == "nodes"]
    ):
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
    return _load(path, env, None)


def load_config_lenient(
    path: Path | str | None = None, env: dict[str, str] | None = None
) -> tuple[MillpondConfig, dict[str, str]]:
    """The config for a command that needs only part of it, and the keys it could not
    resolve (`"sources.crm.url"` -> `"CRM_URL"`): a ${VAR} that is not set stays as written,
    and a key whose unresolved value does not validate is dropped (a whole source when it
    cannot do without it). The caller refuses only when it needs one of those keys
    (`missing_for`). Anything else wrong is an error as in load_config."""
    unset: dict[tuple[Any, ...], str] = {}
    config = _load(path, env, unset)
    return config, {".".join(map(str, k)): v for k, v in unset.items()}


def missing_for(unset: dict[str, str], needed: tuple[str, ...], command: str) -> str | None:
    """Why `command` cannot run on a lenient config: a key it needs reads a ${VAR} that is
    not set; None when it can."""
    for key, var in sorted(unset.items()):
        if any(key == n or key.startswith(n + ".") for n in needed):
            return (
                f"{command} needs {key}, which reads ${{{var}}}: that variable is not set "
                "(export it, or give it a default: ${" + var + ":-...})"
            )
    return None


def _load(
    path: Path | str | None, env: dict[str, str] | None, unset: dict[tuple[Any, ...], str] | None
) -> MillpondConfig:
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
            "says at least what to run, e.g. `sources: {erp: {kind: files, path: inbox/erp, "
            "tables: [orders]}}` and `dbt: {project_dir: transform}`, or `sources: {}` for a "
            "dbt project without sources (see docs/configuration.md, or copy the "
            "repository's millpond.yml)"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{config_file}: expected a mapping of keys at the top level")
    warn_literal_secrets(data, config_file)
    check_env_settings(env)
    read_by_file = referenced_vars(data)
    from_env: dict[tuple[Any, ...], str] = {}
    data = interpolate(data, env, unset=unset, read=from_env)
    origins: dict[tuple[str, ...], str] = {}
    data = apply_env_overrides(data, env, read_by_file, origins)
    data["root"] = str(config_file.parent)
    model = config_model()
    for _ in range(50):  # lenient: each round drops what an unset ${VAR} broke
        try:
            config = model.model_validate(data)
            config.note_from_env(from_env)
            return config
        except ValidationError as exc:
            if not unset or not _drop_unresolved(exc, data, unset):
                raise ConfigError(
                    format_validation_error(exc, data, str(config_file), origins)
                ) from None
    raise ConfigError(f"{config_file}: too many keys read ${{VAR}}s that are not set")


def _drop_unresolved(
    error: ValidationError, data: dict[str, Any], unset: dict[tuple[Any, ...], str]
) -> bool:
    """Drop the keys of `data` whose errors come from unset ${VAR}s (the key itself, or its
    mapping when the key is then missing); False when an error has another cause."""
    drops = []
    for problem in error.errors():
        loc = _user_loc(problem["loc"], data)
        missing = problem["type"] == "missing"
        related = any(
            p[: len(loc)] == loc
            or loc[: len(p)] == p
            or (missing and len(loc) > 1 and p[: len(loc) - 1] == loc[:-1])
            for p in unset
        )
        if not related or not loc:
            return False
        present = not missing and _lookup(data, loc) is not None
        drops.append(loc if present else loc[:-1])
    dropped = False
    for loc in sorted(set(drops), key=len, reverse=True):
        if loc and _delete(data, loc):
            dropped = True
    return dropped


def _delete(data: Any, loc: tuple[Any, ...]) -> bool:
    parent = _lookup(data, loc[:-1])
    if isinstance(parent, dict) and loc[-1] in parent:
        del parent[loc[-1]]
        return True
    if isinstance(parent, list) and isinstance(loc[-1], int) and loc[-1] < len(parent):
        parent.pop(loc[-1])
        return True
    return False
