"""Shared test fixtures: one Prefect server and one set of demo files per test session.

The Prefect API URL is put in the environment before anything imports prefect (Prefect reads
it at import), and the server behind it is started only when a test asks for `prefect_api`,
so the fast unit tier never pays for it.

`just test` runs the tests in pytest-xdist workers (a file per worker at a time). The servers
millpond's tests start (the Prefect server, an embedded PostgreSQL on a laptop) are still one
per `pytest` command: the first worker to ask starts it under a file lock in a folder all
workers share (`MILLPOND_TEST_SHARED`, made by the main process), the others reuse it, and the
main process stops it when every worker is done (`pytest_unconfigure`).

On a laptop: the user's own `MILLPOND_*` variables are cleared when the session starts (tests
and the commands they run see only what a test sets), tests that need the package registry skip
with the reason when it does not answer, and the session fails when a process it started (an
embedded PostgreSQL, a Prefect server, uvicorn, a warm worker) is still alive at its end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import duckdb
import httpx
import psycopg
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# MILLPOND_TEST_PG points the tests at another server (e.g. a closed port, to try laptop mode).
MACHINE_PG = os.environ.get("MILLPOND_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
# Set by .ci/run: a server that should be there and is not fails the test instead of skipping.
REQUIRE_SERVERS = os.environ.get("MILLPOND_REQUIRE_SERVERS") == "1"
# The variables that steer the tests themselves; every other MILLPOND_* the user exported
# (MILLPOND_PREFECT__PORT, MILLPOND_METADATA__URL, ...) would change what the tests run.
TEST_CONTROL_ENV = {"MILLPOND_REQUIRE_SERVERS", "MILLPOND_AIRFLOW_CACHE"}
# Every process this session starts inherits this mark, daemons included (pg_ctl, Prefect):
# what still carries it at the end has leaked (`pytest_unconfigure`).
SESSION_MARK = "MILLPOND_TEST_SESSION"


def clear_user_env(environ: Any = os.environ) -> list[str]:
    """Remove the user's MILLPOND_* variables (not the tests' own controls); their names."""
    cleared = [
        name
        for name in environ
        if name.startswith("MILLPOND_")
        and not name.startswith("MILLPOND_TEST_")
        and name not in TEST_CONTROL_ENV
    ]
    for name in cleared:
        del environ[name]
    return cleared


if not os.environ.get("PYTEST_XDIST_WORKER"):  # workers get the main process's environment
    CLEARED_ENV = clear_user_env()


def machine_pg_available() -> bool:
    try:
        with psycopg.connect(MACHINE_PG, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def require_server(available: bool, reason: str) -> None:
    """Skip (on a laptop) or fail (in CI) when a server millpond cannot start is missing."""
    if available:
        return
    if REQUIRE_SERVERS:
        pytest.fail(f"{reason} (MILLPOND_REQUIRE_SERVERS=1)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # a worker inherits the main process's settings, the Prefect port included
    port = free_port()
    os.environ["MILLPOND_TEST_PREFECT_PORT"] = str(port)
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
    home = Path(config.rootpath) / ".millpond" / "test-prefect"
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(home))
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ["MILLPOND_TEST_SHARED"] = tempfile.mkdtemp(prefix="millpond-test-")
    os.environ[SESSION_MARK] = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    # dbt parses shared by the session's projects (millpond.nodes.dbt.manifest_cache), in a
    # cache of the session's own: the first project parses for real, nothing reaches ~/.cache.
    os.environ["MILLPOND_CACHE_DIR"] = str(Path(os.environ["MILLPOND_TEST_SHARED"]) / "cache")


_SESSION: list[pytest.Session] = []


def pytest_report_header(config: pytest.Config) -> str | None:
    cleared = globals().get("CLEARED_ENV")
    return f"cleared the user's {', '.join(sorted(cleared))}" if cleared else None


def pytest_sessionstart(session: pytest.Session) -> None:
    _SESSION.append(session)


def pytest_unconfigure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    shared = Path(os.environ.pop("MILLPOND_TEST_SHARED", "") or "/nonexistent")
    prefect = shared / "prefect.pid"
    if prefect.is_file():
        if "prefect" in sys.modules:  # send buffered task logs before the server goes away
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=10)
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(prefect.read_text()), signal.SIGTERM)
    _drop_reference_database(shared)
    embedded = shared / "embedded-pg"
    if (embedded / "started").is_file():
        from millpond.metadata.embedded import stop_embedded

        stop_embedded(embedded / "pg")
    shutil.rmtree(shared, ignore_errors=True)
    mark = os.environ.pop(SESSION_MARK, None)
    leaked = leaked_processes(mark) if mark else []
    if leaked:
        for pid, _ in leaked:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        sys.stderr.write(
            f"\nFAILED: {len(leaked)} processes this test session started were still running "
            "after it (killed now); a test or fixture does not stop them:\n"
            + "".join(f"  pid {pid}: {command}\n" for pid, command in leaked)
        )
        if _SESSION and _SESSION[0].exitstatus == 0:
            _SESSION[0].exitstatus = pytest.ExitCode.TESTS_FAILED


def leaked_processes(mark: str, grace_seconds: float = 20.0) -> list[tuple[int, str]]:
    """Processes whose environment carries this session's mark, other than this process and
    its ancestors, once those stopped just now had `grace_seconds` to exit."""
    deadline = time.monotonic() + grace_seconds
    while True:
        found = _marked_processes(mark)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _marked_processes(mark: str) -> list[tuple[int, str]]:
    """(pid, command line) of live processes with `SESSION_MARK=mark` in their environment
    (Linux /proc; elsewhere nothing is checked)."""
    needle = f"{SESSION_MARK}={mark}".encode()
    mine = {os.getpid(), os.getppid()}
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid in mine:
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            if needle not in environ:
                continue
            status, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        # The test that started it: pytest keeps the running test's id in the environment,
        # which a process it starts inherits.
        test = next(
            (
                v.split(b"=", 1)[1].decode(errors="replace")
                for v in environ
                if v.startswith(b"PYTEST_CURRENT_TEST=")
            ),
            "",
        )
        if int(parent) == os.getpid() and "multiprocessing.resource_tracker" in command:
            continue  # Python's own helper of this process (dbt starts it): exits with it
        if status != "Z":  # a zombie has exited; its parent reaps it
            found.append((pid, command.strip()[:200] + (f" (started by {test})" if test else "")))
    return found


def shared_dir() -> Path:
    return Path(os.environ["MILLPOND_TEST_SHARED"])


@pytest.fixture(scope="session")
def prefect_api() -> str:
    """A real Prefect server for the whole `pytest` command (its own home and SQLite database),
    shared by the workers; stopped by pytest_unconfigure."""
    from millpond.core.locks import file_lock

    api = os.environ["PREFECT_API_URL"]
    home = shared_dir() / "prefect-home"
    with file_lock(shared_dir() / "prefect.lock", "test Prefect server"):
        if (shared_dir() / "prefect.pid").is_file():
            return api
        home.mkdir()
        env = dict(os.environ, PREFECT_HOME=str(home))
        env.pop("PREFECT_API_URL")
        port = os.environ["MILLPOND_TEST_PREFECT_PORT"]
        with (home / "server.log").open("wb") as log:
            process = subprocess.Popen(
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", port],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (shared_dir() / "prefect.pid").write_text(str(process.pid))
        # Generous: on a loaded shared machine the server has taken more than two minutes.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{api}/health", timeout=1).status_code == 200:
                    return api
            except httpx.HTTPError:
                pass
            assert process.poll() is None, (home / "server.log").read_text()[-2000:]
            time.sleep(0.5)
        raise RuntimeError("the Prefect test server did not start")


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TPC-H scale 0.01 as ERP exports (CSV + nation/region .xlsx), generated once."""
    from millpond.ingest.demo import generate

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


@dataclass(frozen=True)
class ReferenceRun:
    """One finished `millpond run` of the demo files: its project folder, ledger, run id."""

    project: Path
    ledger_url: str
    run_id: str

    @property
    def published(self) -> Path:
        return self.project / ".millpond" / "published" / "current"


@pytest.fixture(scope="session")
def reference_run(demo_files: Path, prefect_api: str, pg_server: str) -> ReferenceRun:
    """One plain `millpond run` of the demo files (scale 0.01, the DuckDB target, the ledger
    in a database of its own on the session's PostgreSQL), made once per `pytest` command and
    shared by the workers: the first to ask makes it under a file lock in the shared folder,
    the others reuse it. Tests that compare against a Prefect run's marts or ledger records
    (S3, Airflow, the shared dbt build) read it instead of paying for a run of their own; they
    must only read it (a test that changes state makes its own run). pytest_unconfigure drops
    its database."""
    from millpond.core.locks import file_lock

    folder = shared_dir() / "reference"
    done = folder / "done.json"
    with file_lock(shared_dir() / "reference.lock", "test reference run"):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            root = write_project(folder / "project", demo_files)
            name = f"millpond_test_ref_{uuid.uuid4().hex[:8]}"
            url = database_url(pg_server, name)
            with psycopg.connect(pg_server, autocommit=True) as conn:
                conn.execute(f'create database "{name}"')
            (shared_dir() / "reference-db.json").write_text(
                json.dumps({"server": pg_server, "name": name})
            )
            result = millpond(root, "run", env={"MILLPOND_METADATA__URL": url})
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
            with psycopg.connect(url) as conn:
                [(run_id,)] = conn.execute("select run_id from millpond.runs").fetchall()
            done.write_text(json.dumps({"project": str(root), "url": url, "run_id": run_id}))
    made = json.loads(done.read_text())
    return ReferenceRun(Path(made["project"]), made["url"], made["run_id"])


def _drop_reference_database(shared: Path) -> None:
    made = shared / "reference-db.json"
    if made.is_file():
        found = json.loads(made.read_text())
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(found["server"], autocommit=True, connect_timeout=5) as conn,
        ):
            conn.execute(f'drop database if exists "{found["name"]}" with (force)')


@dataclass
class Green:
    """A green run's state (project folder, ledger database) and its pristine copies."""

    project: Path
    pristine: Path
    server: str
    golden_db: str
    case_db: str

    @property
    def url(self) -> str:
        return database_url(self.server, self.case_db)

    @property
    def env(self) -> dict[str, str]:
        return {"MILLPOND_METADATA__URL": self.url}


@pytest.fixture(scope="module")
def green_run(
    tmp_path_factory: pytest.TempPathFactory, demo_files: Path, prefect_api: str, pg_server: str
) -> Iterator[Green]:
    """One green `millpond run` of the demo files (ledger in a database of its own, the
    repo's dbt project copied into the project folder as `dbt/`, so a test may edit a model),
    for a module whose tests each start after one: they restore it with `after_a_green_run`
    instead of paying for a run of their own."""
    base = tmp_path_factory.mktemp("green")
    suffix = uuid.uuid4().hex[:8]
    dbt_copy = base / "project" / "dbt"
    shutil.copytree(REPO / "transform", dbt_copy, ignore=shutil.ignore_patterns("target", "logs"))
    green = Green(
        write_project(base / "project", demo_files, dbt_copy),
        base / "pristine",
        pg_server,
        f"green_gold_{suffix}",
        f"green_{suffix}",
    )
    postgres_execute(pg_server, f'create database "{green.golden_db}"')
    env = {"MILLPOND_METADATA__URL": database_url(pg_server, green.golden_db)}
    first = millpond(green.project, "run", env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    shutil.copytree(green.project, green.pristine, symlinks=True)
    yield green
    postgres_execute(
        pg_server,
        f'drop database if exists "{green.case_db}" with (force)',
        f'drop database if exists "{green.golden_db}" with (force)',
    )


@pytest.fixture
def after_a_green_run(green_run: Green) -> Green:
    """The module's green run as it was: its folder copied back to the same path (raw views
    name lake files by path) and its ledger database cloned."""
    shutil.rmtree(green_run.project)
    shutil.copytree(green_run.pristine, green_run.project, symlinks=True)
    postgres_execute(
        green_run.server,
        f'drop database if exists "{green_run.case_db}" with (force)',
        f'create database "{green_run.case_db}" template "{green_run.golden_db}"',
    )
    return green_run


@pytest.fixture
def project(tmp_path: Path, demo_files: Path) -> Iterator[Path]:
    """A project with the demo inbox; its embedded PostgreSQL (if any) is stopped afterwards."""
    root = write_project(tmp_path / "project", demo_files)
    yield root
    from millpond.metadata.embedded import stop_embedded

    stop_embedded(root / ".millpond" / "pg")


@pytest.fixture(scope="session")
def pg_server() -> str:
    """A PostgreSQL server for the session: the machine's at 127.0.0.1:5432, or (on a laptop
    without one) one embedded PostgreSQL shared by the workers, started once and stopped by
    pytest_unconfigure. CI requires the machine's."""
    if machine_pg_available():
        return MACHINE_PG
    if REQUIRE_SERVERS:
        pytest.fail("no PostgreSQL at 127.0.0.1:5432 (MILLPOND_REQUIRE_SERVERS=1)")
    from millpond.core.locks import file_lock
    from millpond.metadata.embedded import start_embedded

    folder = shared_dir() / "embedded-pg"
    folder.mkdir(exist_ok=True)
    with file_lock(shared_dir() / "embedded-pg.lock", "test PostgreSQL"):
        url = start_embedded(folder / "pg", keep_running=True, database="postgres")
        (folder / "started").touch()
    return url


def database_url(server: str, name: str) -> str:
    """The server's URL with another database name (TCP or embedded socket form)."""
    parts = urlsplit(server)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.contextmanager
def new_database(pg_server: str) -> Iterator[str]:
    """A fresh database on the session's PostgreSQL, dropped afterwards."""
    name = f"millpond_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    yield database_url(pg_server, name)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def machine_pg(pg_server: str) -> Iterator[str]:
    """A fresh database on the session's PostgreSQL, dropped afterwards."""
    with new_database(pg_server) as url:
        yield url


@contextlib.contextmanager
def captured_warnings() -> Iterator[list[str]]:
    """The messages of the WARNING (and higher) log records made inside the block."""
    from millpond.core.logs import logger

    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING", format="{message}")
    try:
        yield messages
    finally:
        logger.remove(sink)


def write_acme_project(root: Path, extra: str = "") -> Path:
    """A tiny project folder: the acme dbt project and its five orders rows, with its own
    state dir; `extra` is appended to millpond.yml."""
    fixtures = REPO / "tests" / "fixtures"
    shutil.copytree(fixtures / "acme_dbt", root / "dbt")
    shutil.copytree(fixtures / "acme_inbox", root / "inbox" / "shop")
    (root / "millpond.yml").write_text(
        "project: acme\n"
        "dbt:\n"
        "  project_dir: dbt\n"
        "  vars: {api_token: not-a-secret}\n"
        "sources:\n"
        "  shop: {kind: files, path: inbox/shop, tables: [orders]}\n" + extra
    )
    return root


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


MARIADB = "mysql://root@127.0.0.1:3306"


def _mysql_admin(database: str) -> duckdb.DuckDBPyConnection:
    from millpond.ingest.duckdb_extensions import load_extension

    con = duckdb.connect()
    load_extension(con, "mysql_scanner")
    con.execute(
        f"ATTACH 'host=127.0.0.1 port=3306 user=root database={database}' AS my (TYPE mysql)"
    )
    return con


def mariadb_available() -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", 3306)) == 0


@pytest.fixture
def mariadb() -> Iterator[str]:
    """A fresh MariaDB database (MariaDB is a server millpond cannot start itself)."""
    require_server(mariadb_available(), "no MariaDB at 127.0.0.1:3306")
    name = f"millpond_test_{uuid.uuid4().hex[:8]}"
    admin = _mysql_admin("mysql")
    admin.execute(f"CALL mysql_execute('my', 'create database {name}')")
    yield f"{MARIADB}/{name}"
    admin.execute(f"CALL mysql_execute('my', 'drop database if exists {name}')")
    admin.close()


def mariadb_execute(url: str, *statements: str) -> None:
    con = _mysql_admin(url.rsplit("/", 1)[1])
    for statement in statements:
        con.execute("CALL mysql_execute('my', ?)", [statement])
    con.close()


def postgres_execute(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    """An empty inbox folder."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


@pytest.fixture
def lake(tmp_path: Path) -> Any:
    """A local lake in the test's folder."""
    from millpond.ingest.lake import Lake

    return Lake.from_url(f"file://{tmp_path / 'lake'}")


# Credentials of the session's S3 server (moto accepts any); tests pass them through ${ENV}.
S3_KEY_ID = "millpond-test-key"
S3_SECRET = "millpond-test-secret-4f9c"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """An S3-compatible server over real HTTP for the session (moto in server mode), its
    endpoint URL; the AWS_* variables point boto3 at it and keep real credentials out."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def s3_env(endpoint: str) -> dict[str, str]:
    """What a millpond.yml with `${S3_ENDPOINT}` etc. reads from the environment."""
    return {
        "S3_ENDPOINT": endpoint,
        "S3_KEY_ID": S3_KEY_ID,
        "S3_SECRET": S3_SECRET,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_KEY_ID,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    )


@pytest.fixture
def s3_bucket(s3_server: str) -> str:
    """A fresh, uniquely named bucket on the session's S3 server."""
    name = f"millpond-{uuid.uuid4().hex[:10]}"
    s3_client(s3_server).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_lake(s3_server: str, s3_bucket: str) -> Any:
    """A lake on the S3 server, under a prefix of a fresh bucket."""
    from millpond.ingest.lake import Lake

    return Lake.from_url(f"s3://{s3_bucket}/lake", s3_server, "us-east-1", S3_KEY_ID, S3_SECRET)


AIRFLOW_VERSION = "3.3.2"


QUICK = ("--retries", "0", "--disable-pip-version-check")


def registry_problem(requirement: str) -> str | None:
    """Why `requirement` cannot be installed from the package registry pip is configured
    with (its index, PIP_INDEX_URL, find-links), asked cheaply: one index page, a short
    timeout, no retries. None when it can."""
    name, _, version = requirement.partition("==")
    try:
        asked = subprocess.run(
            [sys.executable, "-m", "pip", "index", "versions", name, "--timeout", "5", *QUICK],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        return f"pip index versions {name}: no answer in 60 s"
    found = re.search(r"Available versions: (.*)", asked.stdout)
    if asked.returncode != 0 or not found:
        last = (asked.stderr.strip().splitlines() or ["no versions listed"])[-1]
        return f"pip index versions {name}: {last}; {pip_indexes()}"
    if version and version not in [v.strip() for v in found.group(1).split(",")]:
        return f"{name} {version} is not on it"
    return None


def pip_indexes() -> str:
    """The indexes pip is configured with (pip config list), for a skip reason."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    found = re.findall(r"^\S*?(?:index-url|find-links)='(.*)'$", listed, re.M)
    urls = [url for value in found for url in value.split()]
    return "indexes: " + (", ".join(urls) or "https://pypi.org/simple (pip's default)")


@pytest.fixture(scope="session")
def airflow_venv() -> Path:
    """A venv with apache-airflow, kept between test runs (keyed by version): Airflow must
    never be a dependency of millpond itself. Created on first use (~30 s from the mirror)."""
    from millpond.core.locks import file_lock

    cache = Path(os.environ.get("MILLPOND_AIRFLOW_CACHE", Path.home() / ".cache" / "millpond"))
    venv = cache / f"airflow-{AIRFLOW_VERSION}"
    stamp = venv / ".installed"
    cache.mkdir(parents=True, exist_ok=True)
    with file_lock(cache / f"airflow-{AIRFLOW_VERSION}.lock", "airflow venv"):
        if not stamp.is_file():
            problem = registry_problem(f"apache-airflow=={AIRFLOW_VERSION}")
            require_server(
                problem is None,
                f"the package registry does not answer ({problem}): the Airflow tests install "
                f"apache-airflow=={AIRFLOW_VERSION} into a venv of their own, cached in {venv} "
                "once made",
            )
            shutil.rmtree(venv, ignore_errors=True)
            python = getattr(sys, "_base_executable", None) or sys.executable
            subprocess.run([python, "-m", "venv", str(venv)], check=True)
            pip = subprocess.run(
                [str(venv / "bin" / "pip"), "install", "-q", f"apache-airflow=={AIRFLOW_VERSION}"],
                capture_output=True,
                text=True,
            )
            assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
            stamp.touch()
    return venv


@pytest.fixture(scope="session")
def airflow_home(airflow_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An AIRFLOW_HOME with a migrated SQLite database, once per session; the environment to
    run the venv's `airflow` with (point AIRFLOW__CORE__DAGS_FOLDER at a test's DAGs). The
    migrated database is made once beside the cached venv and copied: `airflow db migrate`
    takes a minute or more here."""
    from millpond.core.locks import file_lock

    home = tmp_path_factory.mktemp("airflow-home")
    template = airflow_venv.parent / f"airflow-{AIRFLOW_VERSION}-db"
    with file_lock(airflow_venv.parent / f"airflow-{AIRFLOW_VERSION}-db.lock", "airflow db"):
        if not (template / ".migrated").is_file():
            shutil.rmtree(template, ignore_errors=True)
            template.mkdir()
            migrated = subprocess.run(
                [str(airflow_venv / "bin" / "airflow"), "db", "migrate"],
                env=_airflow_env(airflow_venv, template),
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert migrated.returncode == 0, migrated.stdout[-2000:] + migrated.stderr[-2000:]
            (template / ".migrated").touch()
    shutil.copy2(template / "airflow.db", home / "airflow.db")
    return _airflow_env(airflow_venv, home)


def _airflow_env(airflow_venv: Path, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "PATH": f"{airflow_venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def chromium_driver() -> Any:
    """Debian's chromium under selenium (installed by .ci/run; a laptop without it skips)."""
    require_server(
        bool(shutil.which("chromium") and shutil.which("chromedriver")),
        "chromium and chromedriver not installed (apt-get install -y chromium chromium-driver)",
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--window-size=1400,1200",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
