"""Triggering a run through the Prefect deployment `millpond ui` serves.

When the deployment is served (Prefect says `READY`: a runner polled for its runs within the
last minute), `POST /runs` creates a flow run of it through the Prefect API, already named with
a new run id and tagged `millpond:api`; the deployment's flow adopts that name as its run id and
records the trigger `api`. So the caller gets the run id at once, the run shows in the Prefect UI
like any other, and it runs where scheduled runs run. Otherwise serve/trigger.py starts a
background `millpond run` as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    retry,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
)

from millpond.core.config import MillpondConfig
from millpond.core.runid import new_run_id
from millpond.flows.prefect_api import API_TAG, api_url, read_deployment
from millpond.serve.trigger import AlreadyRunning, TriggerFailed, run_lock_held

TIMEOUT_S = 5.0
# What the Prefect client itself retries: a busy server (its database locked under load answers
# 503) is not a refusal. Safe to repeat: the run id is the flow run's idempotency key.
_BUSY = {429, 502, 503, 504}
_ACTIVE = {"SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"}

_lock = threading.Lock()
_last: tuple[str, str] | None = None  # (flow run id, run id) of the run this service created


def served_deployment(config: MillpondConfig) -> dict[str, Any] | None:
    """The deployment if a runner serves it now; None (use the fallback) otherwise."""
    deployment = read_deployment(config, timeout=TIMEOUT_S)
    return deployment if deployment and deployment.get("status") == "READY" else None


def _still_active(api: str) -> str | None:
    """The run id of the flow run this service created last, while it has not finished."""
    if _last is None:
        return None
    flow_run_id, run_id = _last
    try:
        response = httpx.get(f"{api}/flow_runs/{flow_run_id}", timeout=TIMEOUT_S)
    except httpx.HTTPError:
        return None
    state = (response.json().get("state") or {}) if response.status_code == 200 else {}
    return run_id if state.get("type") in _ACTIVE else None


def _last_answer(state: RetryCallState) -> httpx.Response:
    """The last answer, refused (tenacity has one when it gives up)."""
    assert state.outcome is not None
    return state.outcome.result()


@retry(
    retry=retry_if_result(lambda response: response.status_code in _BUSY),
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=0.5, max=4),
    retry_error_callback=_last_answer,
)
def _create_flow_run(deployment_url: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{deployment_url}/create_flow_run", json=body, timeout=TIMEOUT_S)


def start_run(
    config: MillpondConfig,
    deployment: dict[str, Any],
    running_id: str | None,
    parameters: dict[str, Any],
    queue: Callable[..., None] = lambda run_id, flow_run_id=None: None,
) -> tuple[str, str]:
    """Create a flow run of the deployment; returns (run id, flow run id).

    `queue(run_id)` records the run before the flow run is asked for, and again with
    `flow_run_id` once it exists. AlreadyRunning while a run holds the run lock or the flow
    run created last is not done (a new one would only queue behind it)."""
    global _last
    api = api_url(config)
    with _lock:
        active = _still_active(api)
        if active is not None:
            raise AlreadyRunning(active)
        if run_lock_held(config):
            raise AlreadyRunning(running_id)
        run_id = new_run_id()
        queue(run_id)
        body = {
            "name": run_id,
            "parameters": parameters,
            "tags": ["millpond", API_TAG],
            "idempotency_key": run_id,
        }
        try:
            response = _create_flow_run(f"{api}/deployments/{deployment['id']}", body)
        except httpx.HTTPError as exc:
            raise TriggerFailed(f"the Prefect API did not answer: {exc}") from None
        if response.status_code >= 300:
            raise TriggerFailed(
                f"the Prefect API refused the flow run ({response.status_code}): "
                f"{response.text[:300]}"
            )
        flow_run_id = str(response.json()["id"])
        _last = (flow_run_id, run_id)
        queue(run_id, flow_run_id)
        return run_id, flow_run_id
