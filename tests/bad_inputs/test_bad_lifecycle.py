"""Bad inputs of the run lifecycle: runs asked for (the deployment's flow runs, `POST /runs`,
`millpond run --run-id`) that cannot start, against a real ledger and a real webhook receiver.

Each case asserts what a user meets: the run is in the ledger `failed` with a reason naming
the key, variable or file to fix (or the refusal's status code and message), secrets masked,
the webhook told; and nothing else changed: no file under the project's state folder, no
ledger row but the run's own (none at all when the request is refused).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import millpond
from webhook_receiver import Receiver

from millpond.core.locks import file_lock
from millpond.core.runid import new_run_id
from millpond.metadata.db import migrate
from millpond.runtime.unstartable import ConfigUnreadable, load_or_record

pytestmark = pytest.mark.integration

SECRET = "hunter2-lifecycle-secret"
GOOD = "project: acme\nsources:\n  shop: {kind: files, path: inbox, tables: [orders]}\n"


# --- harness (kept here: the shared one is tests/bad_inputs/conftest.py's) ---------------------


def files_under(root: Path) -> dict[str, str]:
    """Every file under `root` but logs: relative path -> sha256."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "logs" not in p.relative_to(root).parts
    }


def ledger_counts(url: str) -> dict[str, int]:
    tables = ["runs", "node_runs", "row_counts", "test_results", "partitions", "source_state"]
    with psycopg.connect(url) as conn:
        return {
            t: int(conn.execute(f"select count(*) from millpond.{t}").fetchone()[0])  # type: ignore[index]
            for t in tables
        }


def run_row(url: str, run_id: str) -> dict[str, Any] | None:
    with psycopg.connect(url) as conn:
        cur = conn.execute(
            "select status, trigger, error from millpond.runs where run_id = %s", (run_id,)
        )
        row = cur.fetchone()
    return None if row is None else {"status": row[0], "trigger": row[1], "error": row[2]}


@pytest.fixture(scope="module")
def ledger(pg_server: str) -> Iterator[str]:
    import uuid

    from conftest import database_url

    name = f"millpond_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = database_url(pg_server, name)
    migrate(url)
    yield url
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def write_project(root: Path, text: str, ledger: str, receiver: Receiver) -> Path:
    """A project folder whose ledger and webhook are the module's, then `text` (may be bad)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "inbox").mkdir(exist_ok=True)
    head = (
        f"metadata: {{url: '{ledger}'}}\n"
        f"notify:\n  - {{on: [success, failure], webhook: '{receiver.url}'}}\n"
    )
    text = text.replace("{HEAD}", head).replace("{LEDGER}", ledger).replace("{HOOK}", receiver.url)
    (root / "millpond.yml").write_text(text)
    return root / "millpond.yml"


# --- a flow run of the deployment whose config cannot be read ----------------------------------
# (text of millpond.yml, extra environment, what the recorded reason must name)

DEPLOYMENT_CASES: dict[str, tuple[str, dict[str, str], list[str]]] = {
    "missing var in dbt vars": (
        "{HEAD}" + GOOD + "dbt: {vars: {api_token: '${LIFECYCLE_TOKEN}'}}\n",
        {},
        ["dbt.vars.api_token", "${LIFECYCLE_TOKEN} is not set"],
    ),
    "missing var in a source path": (
        "{HEAD}project: acme\nsources:\n  shop: {kind: files, path: '${INBOX}', tables: [o]}\n",
        {},
        ["sources.shop.path", "${INBOX}"],
    ),
    "misspelt top-level key": (
        "{HEAD}" + GOOD + "shedule: '0 6 * * *'\n",
        {},
        ["shedule"],
    ),
    "unknown source kind": (
        "{HEAD}project: acme\nsources:\n  shop: {kind: ftp, path: inbox, tables: [o]}\n",
        {},
        ["sources.shop", "'ftp'"],
    ),
    "override naming no key": (
        "{HEAD}" + GOOD,
        {"MILLPOND_WAREHOUSE__TARGT": "postgres"},
        ["MILLPOND_WAREHOUSE__TARGT", "MILLPOND_WAREHOUSE__TARGET"],
    ),
    "unknown target": (
        "{HEAD}" + GOOD,
        {"MILLPOND_WAREHOUSE__TARGET": "oracle"},
        ["warehouse.target", "'oracle'"],
    ),
    "missing var in metadata.url, the URL given by an override": (
        "metadata: {url: '${LEDGER_URL}'}\n"
        "notify:\n  - {on: [failure], webhook: '{HOOK}'}\n" + GOOD,
        {"MILLPOND_METADATA__URL": "{LEDGER}"},
        ["metadata.url", "${LEDGER_URL}"],
    ),
    "secret value in a bad setting": (
        "{HEAD}" + GOOD + "prefect: {port: '${LIFECYCLE_PASSWORD}'}\n",
        {"LIFECYCLE_PASSWORD": SECRET},
        ["prefect.port", "***"],
    ),
    "bad notify hook beside a good one": (
        "metadata: {url: '{LEDGER}'}\nnotify:\n  - {on: [failure], webhook: '${HOOK_URL}'}\n"
        "  - {on: [failure], webhook: '{HOOK}'}\n" + GOOD,
        {},
        ["notify", "${HOOK_URL}"],
    ),
}
# A file that is gone or not YAML: the ledger comes from the MILLPOND_* overrides alone.
UNREADABLE_FILE_CASES: dict[str, tuple[str | None, list[str]]] = {
    "not YAML": ("project: acme\nsources: {shop: [\n", ["not valid YAML", "millpond.yml"]),
    "a list, not a mapping": ("- project\n- acme\n", ["expected a mapping", "millpond.yml"]),
    "empty file": ("", ["is empty", "millpond.yml"]),
    "file deleted": (None, ["config file not found", "millpond.yml"]),
}
# The ledger itself cannot be read: the run cannot be recorded, and the error says so.
NO_LEDGER_CASES: dict[str, str] = {
    "missing var in metadata.url": "metadata: {url: '${LEDGER_URL}'}\n" + GOOD,
    "missing var in state_dir": "state_dir: '${STATE}'\nmetadata: {url: '{LEDGER}'}\n" + GOOD,
}


def assert_recorded(ledger: str, receiver: Receiver, run_id: str, names: list[str]) -> None:
    run = run_row(ledger, run_id)
    assert run is not None, f"{run_id} is not in the ledger"
    assert (run["status"], run["trigger"]) == ("failed", "schedule")
    for name in names:
        assert name in run["error"], (name, run["error"])
    [told] = receiver.for_run(run_id)
    assert told["status"] == "failed" and told["error"] == run["error"][: len(told["error"])]
    assert SECRET not in json.dumps(told) + run["error"]


@pytest.mark.parametrize("case", DEPLOYMENT_CASES)
def test_a_flow_run_whose_config_is_bad_is_recorded_failed(
    case: str, tmp_path: Path, ledger: str, receiver: Receiver
) -> None:
    text, env, names = DEPLOYMENT_CASES[case]
    config = write_project(tmp_path / "p", text, ledger, receiver)
    before, counts = files_under(tmp_path / "p"), ledger_counts(ledger)
    run_id = new_run_id()
    env = {k: v.replace("{LEDGER}", ledger) for k, v in env.items()}
    with pytest.raises(ConfigUnreadable) as refused:
        load_or_record(run_id, "schedule", None, {"MILLPOND_CONFIG": str(config), **env})
    assert SECRET not in str(refused.value)
    assert_recorded(ledger, receiver, run_id, names)
    assert files_under(tmp_path / "p") == before  # no lake, warehouse or buffer
    assert ledger_counts(ledger) == {**counts, "runs": counts["runs"] + 1}


@pytest.mark.parametrize("case", UNREADABLE_FILE_CASES)
def test_a_flow_run_whose_config_file_is_unreadable_is_recorded_from_the_overrides(
    case: str, tmp_path: Path, ledger: str, receiver: Receiver
) -> None:
    text, names = UNREADABLE_FILE_CASES[case]
    config = tmp_path / "p" / "millpond.yml"
    config.parent.mkdir()
    if text is not None:
        config.write_text(text)
    env = {
        "MILLPOND_CONFIG": str(config),
        "MILLPOND_METADATA__URL": ledger,
        "MILLPOND_NOTIFY": json.dumps([{"on": ["failure"], "webhook": receiver.url}]),
    }
    before, counts = files_under(tmp_path / "p"), ledger_counts(ledger)
    run_id = new_run_id()
    with pytest.raises(ConfigUnreadable):
        load_or_record(run_id, "schedule", None, env)
    assert_recorded(ledger, receiver, run_id, names)
    assert files_under(tmp_path / "p") == before
    assert ledger_counts(ledger) == {**counts, "runs": counts["runs"] + 1}


@pytest.mark.parametrize("case", NO_LEDGER_CASES)
def test_a_flow_run_whose_ledger_cannot_be_read_says_it_is_not_recorded(
    case: str, tmp_path: Path, ledger: str, receiver: Receiver
) -> None:
    config = tmp_path / "p" / "millpond.yml"
    config.parent.mkdir()
    config.write_text(NO_LEDGER_CASES[case].replace("{LEDGER}", ledger))
    counts, told = ledger_counts(ledger), len(receiver.bodies)
    with pytest.raises(ConfigUnreadable, match="no ledger could be found"):
        load_or_record(new_run_id(), "schedule", None, {"MILLPOND_CONFIG": str(config)})
    # Not recorded in a default ledger instead (an embedded one in the project folder).
    assert set(files_under(tmp_path / "p")) == {"millpond.yml"}
    assert ledger_counts(ledger) == counts and len(receiver.bodies) == told


# --- millpond run --run-id (what POST /runs starts without a served deployment) -----------------

RUN_ID_CASES: dict[str, tuple[str, str, int, list[str]]] = {
    # (the --run-id value, millpond.yml, exit code, what the run's reason or stderr names)
    "not a run id": ("../../x", "{HEAD}" + GOOD, 2, ["--run-id", "not a millpond run id"]),
    "config gained a missing var": (
        "{NEW}",
        "{HEAD}" + GOOD + "dbt: {vars: {token: '${LIFECYCLE_GONE}'}}\n",
        2,
        ["${LIFECYCLE_GONE}", "dbt.vars.token"],
    ),
}


@pytest.mark.parametrize("case", RUN_ID_CASES)
def test_run_with_a_run_id_that_cannot_start(
    case: str, tmp_path: Path, ledger: str, receiver: Receiver
) -> None:
    given, text, code, names = RUN_ID_CASES[case]
    write_project(tmp_path / "p", text, ledger, receiver)
    run_id = new_run_id() if given == "{NEW}" else given
    counts = ledger_counts(ledger)
    result = millpond(tmp_path / "p", "run", "--trigger", "schedule", "--run-id", run_id)
    assert result.returncode == code, result.stdout + result.stderr
    if given != "{NEW}":  # refused: nothing recorded
        assert all(n in result.stderr for n in names), result.stderr
        assert ledger_counts(ledger) == counts
        return
    assert_recorded(ledger, receiver, run_id, names)
    assert ledger_counts(ledger) == {**counts, "runs": counts["runs"] + 1}


# --- POST /runs -----------------------------------------------------------------------------


class RefusingPrefect:
    """A Prefect API on 127.0.0.1 that serves the deployment (READY) and answers the first
    `busy` requests for a flow run with 503 (a busy server), the others with `status`."""

    def __init__(self, status: int, project: str, busy: int = 0) -> None:
        answer = {"id": "0b0e6f4a-0000-4000-8000-000000000000", "status": "READY"}
        self.bodies: list[dict[str, Any]] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = self.path.endswith(f"/deployments/name/{project}/{project}")
                self._send(200 if found else 404, answer if found else {"detail": "no"})

            def do_POST(self) -> None:
                bodies.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                code = 503 if len(bodies) <= busy else status
                self._send(code, answer if code < 300 else {"detail": f"refused with {code}"})

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.parametrize("status", [500, 422, 404, 503])
def test_post_runs_when_prefect_refuses_the_flow_run_records_the_run_failed(
    status: int,
    tmp_path: Path,
    ledger: str,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from serve_helpers import api_for

    prefect = RefusingPrefect(status, "acme")
    config = write_project(tmp_path / "p", "{HEAD}" + GOOD, ledger, receiver)
    config.write_text(config.read_text() + f"prefect: {{api_url: '{prefect.url}'}}\n")
    monkeypatch.delenv("MILLPOND_API_KEYS", raising=False)
    counts = ledger_counts(ledger)
    try:
        with api_for(config, monkeypatch) as api:
            refused = api.post("/runs")
            assert refused.status_code == 503, refused.text
            detail = refused.json()["detail"]
            assert "details in the service log" in detail  # the reason is in the ledger
            run_id = detail.split("could not start run ", 1)[1].split(" ", 1)[0]
            run = api.get(f"/runs/{run_id}").json()
    finally:
        prefect.server.shutdown()
    assert (run["status"], run["trigger"]) == ("failed", "api"), run
    assert f"Prefect API refused the flow run ({status})" in run["error"]
    assert ledger_counts(ledger) == {**counts, "runs": counts["runs"] + 1}


def test_post_runs_when_prefect_is_busy_asks_again_for_the_same_flow_run(
    tmp_path: Path, ledger: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Prefect server under load answers 503 for a while (its database is locked): the run
    is started on a later try, and every try carries the run id as the idempotency key, so a
    try whose answer was lost cannot make a second flow run."""
    from serve_helpers import api_for

    prefect = RefusingPrefect(201, "acme", busy=2)
    config = write_project(tmp_path / "p", "{HEAD}" + GOOD, ledger, receiver)
    config.write_text(config.read_text() + f"prefect: {{api_url: '{prefect.url}'}}\n")
    monkeypatch.delenv("MILLPOND_API_KEYS", raising=False)
    try:
        with api_for(config, monkeypatch) as api:
            started = api.post("/runs")
            assert started.status_code == 202, started.text
            run_id = started.json()["run_id"]
            run = api.get(f"/runs/{run_id}").json()
    finally:
        prefect.server.shutdown()
    assert run["status"] == "queued", run  # no runner here takes it: it stays asked for
    assert [body["idempotency_key"] for body in prefect.bodies] == [run_id] * 3


def test_post_runs_while_a_run_holds_the_lock_is_refused_and_records_nothing(
    tmp_path: Path, ledger: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serve_helpers import api_for

    config = write_project(tmp_path / "p", "{HEAD}state_dir: state\n" + GOOD, ledger, receiver)
    monkeypatch.delenv("MILLPOND_API_KEYS", raising=False)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # no deployment served
    counts = ledger_counts(ledger)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with file_lock(tmp_path / "p" / "state" / "locks" / "run.lock", "run"):
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert held.wait(30)
    try:
        with api_for(config, monkeypatch) as api:
            refused = api.post("/runs")
    finally:
        release.set()
        holder.join(30)
    assert refused.status_code == 409, refused.text
    assert "already running" in refused.json()["detail"]
    assert ledger_counts(ledger) == counts
