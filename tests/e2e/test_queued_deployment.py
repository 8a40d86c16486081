"""Runs of the served deployment are in the ledger from the moment they are asked for, with
the session's real Prefect server, a real ledger and a real webhook receiver.

`millpond ui` serves the deployment; then millpond.yml gains a `${VAR}` the serving process
does not have (a key added after `millpond ui` started). A run started from the Prefect UI
and one started by `POST /runs` both fail before the graph: each is in the ledger, in
`millpond status`, at `/runs/{id}` and at the webhook, failed with the variable named; and
`GET /runs/{id}` knows the API's run the moment `POST /runs` answered.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import BIN
from serve_helpers import api_for
from webhook_receiver import Receiver

from millpond.core.runid import is_run_id

pytestmark = pytest.mark.e2e

DONE = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
SECRET = "lifecycle-s3cret-value"


def cli(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "millpond"), *args],
        cwd=root,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


class Stack:
    def __init__(self, root: Path, api: str, project: str) -> None:
        self.root, self.api, self.project = root, api, project

    def deployment(self) -> Any:
        name = self.project
        response = httpx.get(f"{self.api}/deployments/name/{name}/{name}", timeout=10)
        response.raise_for_status()
        return response.json()

    def wait_done(self, flow_run_id: str, seconds: float = 300) -> Any:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            flow_run = httpx.get(f"{self.api}/flow_runs/{flow_run_id}", timeout=10).json()
            if flow_run["state"]["type"] in DONE:
                return flow_run
            time.sleep(1)
        log = self.root / ".millpond" / "logs" / "prefect-deployment.log"
        raise AssertionError(f"flow run {flow_run_id} did not finish: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def stack(
    prefect_api: str, pg_server: str, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    import psycopg
    from conftest import database_url

    database = f"millpond_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'create database "{database}"')
    project = f"lifecycle-{uuid.uuid4().hex[:6]}"  # its own deployment on the shared server
    root = tmp_path_factory.mktemp("queued") / "project"
    (root / "inbox").mkdir(parents=True)
    (root / "millpond.yml").write_text(
        f"project: {project}\n"
        f"metadata: {{url: '{database_url(pg_server, database)}'}}\n"
        "sources:\n  erp: {kind: files, path: inbox, tables: [orders]}\n"
        f"notify:\n  - {{on: [success, failure], webhook: '{receiver.url}', format: json}}\n"
    )
    started = cli(root, "ui")
    assert started.returncode == 0, started.stdout + started.stderr
    # Added after `millpond ui` started: the serving process does not have LIFECYCLE_TOKEN.
    with (root / "millpond.yml").open("a") as config:
        config.write("dbt:\n  vars: {api_token: '${LIFECYCLE_TOKEN}'}\n")
    yield Stack(root, prefect_api, project)
    cli(root, "down", LIFECYCLE_TOKEN=SECRET)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{database}" with (force)')


def assert_recorded_failed(stack: Stack, run_id: str, trigger: str, receiver: Receiver) -> None:
    """The run is failed with the variable named, everywhere a user would look."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("LIFECYCLE_TOKEN", SECRET)
        with api_for(stack.root / "millpond.yml", monkeypatch) as api:
            run = api.get(f"/runs/{run_id}").json()
    assert (run["status"], run["trigger"]) == ("failed", trigger), run
    assert "${LIFECYCLE_TOKEN} is not set" in run["error"]
    assert "dbt.vars.api_token" in run["error"]
    status = cli(stack.root, "status", run_id, LIFECYCLE_TOKEN=SECRET)
    assert status.returncode == 0, status.stderr
    assert "failed" in status.stdout and "LIFECYCLE_TOKEN" in status.stdout
    listed = cli(stack.root, "status", LIFECYCLE_TOKEN=SECRET)
    assert run_id in listed.stdout
    [told] = receiver.for_run(run_id)
    assert told["status"] == "failed" and "LIFECYCLE_TOKEN" in told["error"]
    assert told["duration_ms"] == run["duration_ms"] and told["rows"] == 0
    assert SECRET not in str(run) + status.stdout + str(told)


def test_a_ui_run_that_cannot_read_its_config_is_recorded_failed(
    stack: Stack, receiver: Receiver
) -> None:
    deployment = stack.deployment()
    created = httpx.post(
        f"{stack.api}/deployments/{deployment['id']}/create_flow_run",
        json={"parameters": {}},
        timeout=10,
    ).json()
    flow_run = stack.wait_done(created["id"])
    assert flow_run["state"]["type"] == "FAILED"
    run_id = flow_run["name"]
    assert is_run_id(run_id), run_id
    assert "LIFECYCLE_TOKEN" in flow_run["state"]["message"]
    assert_recorded_failed(stack, run_id, "ui", receiver)


def test_post_runs_is_queued_at_once_then_recorded_failed(
    stack: Stack, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MILLPOND_API_KEYS", raising=False)
    monkeypatch.setenv("LIFECYCLE_TOKEN", SECRET)  # the API's process has it
    with api_for(stack.root / "millpond.yml", monkeypatch) as api:
        started = api.post("/runs")
        assert started.status_code == 202, started.text
        body = started.json()
        assert body["status"] == "scheduled", body  # through the served deployment
        at_once = api.get(f"/runs/{body['run_id']}")
        assert at_once.status_code == 200, at_once.text
        queued = at_once.json()
        # The flow run has not started yet (Prefect's runner polls every few seconds).
        assert (queued["status"], queued["trigger"]) == ("queued", "api")
        assert queued["queued_at"] and queued["flow_run_id"] == body["flow_run_id"]
        assert body["run_id"] in [r["run_id"] for r in api.get("/runs").json()["items"]]
    flow_run = stack.wait_done(body["flow_run_id"])
    assert flow_run["state"]["type"] == "FAILED" and flow_run["name"] == body["run_id"]
    assert_recorded_failed(stack, body["run_id"], "api", receiver)
