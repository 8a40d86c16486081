"""`--vars`: dbt vars for one run, merged over `dbt.vars` of millpond.yml.

The value is parsed here, never echoed: a var may hold a token, and the error of a bad value
names the option only. The merged vars are registered as secrets by the config's one policy
(millpond.core.masking: vars named like secrets, `dbt.secret_vars`) before anything logs.
"""

from __future__ import annotations

from typing import Any

import typer
import yaml

from millpond.core.config import MillpondConfig
from millpond.core.masking import register_secrets


def parse_vars(text: str) -> dict[str, Any]:
    """A YAML (or JSON) mapping of var names to values."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise typer.BadParameter(
            'must be a YAML or JSON mapping of var names, e.g. \'{"start_date": "2024-01-01"}\'',
            param_hint="--vars",
        )
    return value


def with_vars(config: MillpondConfig, text: str | None) -> MillpondConfig:
    """The config with `--vars` merged over dbt.vars (unchanged without it)."""
    if not text:
        return config
    if config.dbt is None:
        raise typer.BadParameter(
            "this project has no dbt section (ingest-only): there are no dbt vars to set",
            param_hint="--vars",
        )
    merged = {**config.dbt.vars, **parse_vars(text)}
    changed = config.model_copy(update={"dbt": config.dbt.model_copy(update={"vars": merged})})
    register_secrets(changed.secrets())
    return changed
