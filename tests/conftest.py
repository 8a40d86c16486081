"""Shared test fixtures: one Prefect server and one set of demo files per test session.

The Prefect API URL is put in the environment before anything imports prefect (Prefect reads
it at import), and the server behind it is started only when a test asks for `prefect_api`,
so the fast unit tier never pays for it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MACHINE_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pytest_configure(config: pytest.Config) -> None:
    port = free_port()
    os.environ["MILLPOND_TEST_PREFECT_PORT"] = str(port)
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
    home = Path(config.rootpath) / ".millpond" / "test-prefect"
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(home))
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    os.environ["DO_NOT_TRACK"] = "1"


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server for the whole session (its own home and SQLite database)."""
    api = os.environ["PREFECT_API_URL"]
    home = tmp_path_factory.mktemp("prefect-home")
    env = dict(os.environ, PREFECT_HOME=str(home))
    env.pop("PREFECT_API_URL")
    log = (home / "server.log").open("wb")
    port = os.environ["MILLPOND_TEST_PREFECT_PORT"]
    process = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", port],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert process.poll() is None, (home / "server.log").read_text()[-2000:]
        time.sleep(0.5)
    else:
        raise RuntimeError("the Prefect test server did not start")
    yield api
    if "prefect" in sys.modules:  # send buffered task logs before the server goes away
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TPC-H scale 0.01 as ERP exports (CSV + nation/region .xlsx), generated once."""
    from millpond.demo import generate

    inbox = tmp_path_factory.mktemp("demo") / "erp"
    generate(inbox, 0.01)
    return inbox


def write_project(root: Path, inbox_from: Path | None, dbt_project: Path | None = None) -> Path:
    """A millpond project folder: config, an inbox copy, the repo's dbt project by path."""
    root.mkdir(parents=True, exist_ok=True)
    text = (REPO / "millpond.yml").read_text()
    text = text.replace(
        "project_dir: transform", f"project_dir: {dbt_project or REPO / 'transform'}"
    )
    (root / "millpond.yml").write_text(text)
    if inbox_from is not None:
        shutil.copytree(inbox_from, root / "inbox" / "erp")
    return root


@pytest.fixture
def project(tmp_path: Path, demo_files: Path) -> Iterator[Path]:
    """A project with the demo inbox; its embedded PostgreSQL (if any) is stopped afterwards."""
    root = write_project(tmp_path / "project", demo_files)
    yield root
    from metadata.embedded import stop_embedded

    stop_embedded(root / ".millpond" / "pg")


@pytest.fixture
def machine_pg() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL, dropped afterwards."""
    name = f"millpond_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(MACHINE_PG, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(MACHINE_PG, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def millpond(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the `millpond` command in a project folder, as a user would."""
    return subprocess.run(
        [str(BIN / "millpond"), *args],
        cwd=project,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
