"""Where the Prefect API is and what millpond's deployment is called, from the config alone.

The CLI, the deployment's background process and the API service (`POST /runs`) must agree on
both. Knowing Prefect is flows/' job, not the kernel's; serve may import this module (the import
rule allows serve -> flows), which imports neither Prefect nor httpx at import, and neither does
`flows/__init__.py`, so the API does not load Prefect at startup.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

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


def read_deployment(
    config: MillpondConfig, api: str | None = None, timeout: float = 5.0
) -> dict[str, Any] | None:
    """The project's deployment as the Prefect API has it; None when there is none or the API
    cannot be reached (callers fall back to running without it)."""
    import httpx  # lazily: most commands never ask for the deployment

    flow_name, name = deployment_name(config)
    base = api or api_url(config)
    url = f"{base}/deployments/name/{quote(flow_name, safe='')}/{quote(name, safe='')}"
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


# On flow runs of the deployment created by millpond's own API (`POST /runs`): the flow records
# the trigger `api` for them, `ui` for other manual runs.
API_TAG = "millpond:api"
