"""Where the Prefect API is and what millpond's deployment is called, from the config alone.

The CLI, the deployment's background process and the API service (`POST /runs`) must agree on
both without importing each other, so they live in the kernel.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from millpond.core.config import MillpondConfig


def api_url(config: MillpondConfig, env: Mapping[str, str] | None = None) -> str:
    """The Prefect API millpond talks to: configured, from the environment, or the local one."""
    env = os.environ if env is None else env
    return (
        config.prefect.api_url
        or env.get("PREFECT_API_URL")
        or f"http://{config.prefect.host}:{config.prefect.port}/api"
    )


def ui_url(api: str) -> str:
    return api.removesuffix("/").removesuffix("/api")


def deployment_name(config: MillpondConfig) -> tuple[str, str]:
    """(flow name, deployment name): both the project's name, so the UI shows `millpond/millpond`
    for the default project and runs from `millpond run` land under the same flow."""
    return config.project, config.project


# On flow runs of the deployment created by millpond's own API (`POST /runs`): the flow records
# the trigger `api` for them, `ui` for other manual runs.
API_TAG = "millpond:api"
