"""`millpond ui` on a non-default port: the server with a UI that reaches its API, the deployment
on the schedule of millpond.yml, runs started through Prefect's API and `POST /runs`, and
`millpond down` (TPC-H 0.01).

The module is about starting the server, so it starts one of its own (through `millpond ui`, on
a free port that is not 4200) instead of the session's `prefect_api`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import BIN, REPO, chromium_driver, free_port, write_project
from serve_helpers import api_for

from millpond.core.runid import is_run_id

pytestmark = pytest.mark.e2e

CRON = "17 5 * * *"
DONE = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`millpond` as a user runs it: no PREFECT_API_URL, so the configured port decides."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    # The server's scheduler puts a deployment's runs on the calendar every 60 s by default.
    env["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = "5"
    return subprocess.run(
        [str(BIN / "millpond"), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


class Stack:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.api = f"http://127.0.0.1:{port}/api"
        self.ui = f"http://127.0.0.1:{port}"

    def get(self, path: str) -> Any:
        response = httpx.get(self.api + path, timeout=10)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(self.api + path, json=body, timeout=10)
        assert response.status_code < 300, response.text
        return response.json()

    def deployment(self) -> Any:
        return self.get("/deployments/name/millpond/millpond")

    def wait_done(self, flow_run_id: str, seconds: float = 300) -> Any:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            flow_run = self.get(f"/flow_runs/{flow_run_id}")
            if flow_run["state"]["type"] in DONE:
                return flow_run
            time.sleep(1)
        raise AssertionError(f"flow run {flow_run_id} did not finish: {self.log()[-3000:]}")

    def log(self) -> str:
        path = self.root / ".millpond" / "logs" / "prefect-deployment.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pid(self, name: str) -> int:
        return int((self.root / ".millpond" / "prefect" / name).read_text())


def alive(pid: int, marker: bytes) -> bool:
    """The process still runs (and is the one we mean, not a reused pid)."""
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, demo_files: Path) -> Iterator[Stack]:
    port = free_port()
    assert port != 4200
    root = write_project(tmp_path_factory.mktemp("deployment") / "project", demo_files)
    text = (root / "millpond.yml").read_text()
    text = text.replace("prefect:\n  port: 4200", f"prefect:\n  port: {port}")
    text = text.replace('schedule: "0 6 * * *"', f'schedule: "{CRON}"')
    (root / "millpond.yml").write_text(text)
    started = cli(root, "ui")
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"Prefect UI: http://127.0.0.1:{port}" in started.stdout
    yield Stack(root, port)
    cli(root, "down")


def test_the_deployment_is_served_on_the_schedule_of_millpond_yml(stack: Stack) -> None:
    deployment = stack.deployment()
    assert [s["schedule"]["cron"] for s in deployment["schedules"]] == [CRON]
    assert all(s["active"] for s in deployment["schedules"])
    assert not deployment["paused"]
    properties = deployment["parameter_openapi_schema"]["properties"]
    assert {"select", "exclude", "full_refresh", "target", "retry_of"} <= set(properties)
    # Prefect's scheduler (a loop of the server, every 60 s) puts the cron's next runs on the
    # calendar.
    query = {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}, "limit": 20}
    deadline = time.monotonic() + 180
    scheduled: list[Any] = []
    while not scheduled and time.monotonic() < deadline:
        time.sleep(2)
        scheduled = [r for r in stack.post("/flow_runs/filter", query) if r["auto_scheduled"]]
    assert scheduled
    assert all(r["expected_start_time"][11:16] == "05:17" for r in scheduled)


def test_a_second_ui_reuses_the_server_and_the_serving_process(stack: Stack) -> None:
    server, served = stack.pid("server.pid"), stack.pid("deployment.pid")
    again = cli(stack.root, "ui")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"already served by pid {served}" in again.stdout
    assert (stack.pid("server.pid"), stack.pid("deployment.pid")) == (server, served)


def ledger_run(stack: Stack, run_id: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    with api_for(stack.root / "millpond.yml", monkeypatch) as api:
        return api.get(f"/runs/{run_id}").json()


@pytest.fixture(scope="module")
def ui_run(stack: Stack) -> Any:
    """A run started as the Prefect UI starts one: a flow run of the deployment, via its API."""
    deployment = stack.deployment()
    created = stack.post(f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {}})
    return stack.wait_done(created["id"])


@pytest.fixture(scope="module")
def nodes(stack: Stack) -> list[str]:
    return [n["id"] for n in json.loads(cli(stack.root, "graph", "--json").stdout)["nodes"]]


def test_a_run_started_through_prefect_is_one_whole_millpond_run(
    stack: Stack, ui_run: Any, nodes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ui_run["state"]["type"] == "COMPLETED", stack.log()[-3000:]
    run_id = ui_run["name"]  # named as it started: a millpond run id, not Prefect's random name
    assert is_run_id(run_id), run_id
    run = ledger_run(stack, run_id, monkeypatch)
    assert run["status"] == "success", run
    assert run["trigger"] == "ui" and run["orchestrator"] == "prefect"
    assert run["flow_run_id"] == ui_run["id"]
    node_ids = set(nodes)
    tasks = stack.post(
        "/task_runs/filter", {"task_runs": {"flow_run_id": {"any_": [ui_run["id"]]}}, "limit": 200}
    )
    assert {t["name"] for t in tasks} == node_ids
    # One flow run, not a flow run that starts another one.
    children = stack.post(
        "/flow_runs/filter",
        {"flow_runs": {"parent_task_run_id": {"is_null_": False}}, "limit": 10},
    )
    assert children == []
    assert (stack.root / ".millpond" / "logs" / f"{run_id}.jsonl").exists()


def test_post_runs_goes_through_the_deployment(
    stack: Stack, ui_run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("MILLPOND_API_KEYS", raising=False)
    with api_for(stack.root / "millpond.yml", monkeypatch) as api:
        started = api.post("/runs", json={"full_refresh": False})
        assert started.status_code == 202, started.text
        body = started.json()
        assert body["status"] == "scheduled" and body["flow_run_id"]
        second = api.post("/runs")
        assert second.status_code == 409 and second.json()["run_id"] == body["run_id"]
        bad = api.post("/runs", json={"select": "not-a-list", "bogus": 1})
        assert bad.status_code == 422
    flow_run = stack.wait_done(body["flow_run_id"])
    assert flow_run["state"]["type"] == "COMPLETED", stack.log()[-3000:]
    assert flow_run["name"] == body["run_id"]
    assert flow_run["deployment_id"] == stack.deployment()["id"]
    run = ledger_run(stack, body["run_id"], monkeypatch)
    assert run["status"] == "success" and run["trigger"] == "api", run
    # Nothing new since the UI's run: every node is settled as up to date, with no task runs.
    assert "nothing new" in flow_run["state"]["message"]
    assert set(run["summary"]["nodes"].values()) == {"unchanged"}
    tasks = stack.post(
        "/task_runs/filter",
        {"task_runs": {"flow_run_id": {"any_": [body["flow_run_id"]]}}, "limit": 10},
    )
    assert tasks == []


def failed_copy_of(stack: Stack, run_id: str, failed_node: str) -> str:
    """A failed run in the stack's ledger: the nodes of `run_id`, `failed_node` failed (as a
    publish fails on a full disk)."""
    import psycopg

    from millpond.core.config_loading import load_config
    from millpond.core.runid import new_run_id
    from millpond.metadata.db import resolve_url

    config = load_config(stack.root / "millpond.yml", dict(os.environ))
    url = resolve_url(config.metadata.url, config.state, keep_running=True)
    failed = new_run_id()
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "insert into millpond.runs (run_id, orchestrator, trigger, target, started_at, "
            "finished_at, status, error) select %s, orchestrator, 'schedule', target, now(), "
            "now(), 'failed', 'publish failed: disk full' from millpond.runs where run_id = %s",
            (failed, run_id),
        )
        conn.execute(
            "insert into millpond.node_runs (run_id, node_id, kind, attempt, status, "
            "started_at, finished_at, duration_ms, rows) select %s, node_id, kind, attempt, "
            "case when node_id = %s then 'failed' else status end, started_at, finished_at, "
            "duration_ms, rows from millpond.node_runs where run_id = %s",
            (failed, failed_node, run_id),
        )
    return failed


def test_post_retry_goes_through_the_deployment(
    stack: Stack, ui_run: Any, nodes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = failed_copy_of(stack, ui_run["name"], "publish")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("MILLPOND_API_KEYS", raising=False)
    with api_for(stack.root / "millpond.yml", monkeypatch) as api:
        started = api.post(f"/runs/{failed}/retry")
        assert started.status_code == 202, started.text
        body = started.json()
        assert body["status"] == "scheduled" and body["flow_run_id"]
    flow_run = stack.wait_done(body["flow_run_id"])
    assert flow_run["state"]["type"] == "COMPLETED", stack.log()[-3000:]
    assert flow_run["parameters"]["retry_of"] == failed
    run = ledger_run(stack, body["run_id"], monkeypatch)
    assert run["status"] == "success" and run["trigger"] == "api", run
    assert run["retry_of"] == failed
    # Only publish reruns (the marts it would publish are those readers have: unchanged);
    # every other node is kept, and each still is a task of the flow run.
    assert run["summary"]["nodes"] == dict.fromkeys(nodes, "unchanged")
    tasks = stack.post(
        "/task_runs/filter",
        {"task_runs": {"flow_run_id": {"any_": [body["flow_run_id"]]}}, "limit": 200},
    )
    assert {t["name"] for t in tasks} == set(nodes)
    assert ledger_run(stack, failed, monkeypatch)["retried_by"] == [body["run_id"]]


def test_the_ui_on_a_non_default_port_shows_the_flow_run_graph(
    stack: Stack, ui_run: Any, nodes: list[str]
) -> None:
    settings = httpx.get(f"{stack.ui}/ui-settings", timeout=10).json()
    assert settings["api_url"] == stack.api
    artifacts = REPO / ".millpond" / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    driver = chromium_driver()
    try:
        driver.get(f"{stack.ui}/runs/flow-run/{ui_run['id']}")
        # Only the API knows these: the run's name, its task count, its task runs' names (in
        # the logs under the graph; the graph itself is drawn on a canvas).
        expected = [ui_run["name"], f"{len(nodes)} Task runs"]
        deadline = time.monotonic() + 60
        source, shown = "", []
        while time.monotonic() < deadline:
            source = driver.page_source
            shown = [n for n in nodes if n in source]
            if all(e in source for e in expected) and len(shown) >= 3:
                break
            time.sleep(0.5)
        time.sleep(1.5)  # let the graph canvas finish drawing for the screenshot
        driver.save_screenshot(str(artifacts / "prefect-flow-run.png"))
        assert "Can't connect to Server API" not in source
        assert all(e in source for e in expected), expected
        assert len(shown) >= 3, "no task runs of the graph appeared"
        canvases = driver.execute_script("return document.querySelectorAll('canvas').length")
        assert canvases >= 1, "no flow run graph drawn"
    finally:
        driver.quit()


def test_down_stops_the_serving_process_and_the_server(stack: Stack, ui_run: Any) -> None:
    server, served = stack.pid("server.pid"), stack.pid("deployment.pid")
    down = cli(stack.root, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "deployment: stopped" in down.stdout and "Prefect server: stopped" in down.stdout
    assert not alive(server, b"server") and not alive(served, b"serve-deployment")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{stack.api}/health", timeout=2)
    again = cli(stack.root, "down")
    assert (
        "deployment: not served" in again.stdout and "Prefect server: not running" in again.stdout
    )
