"""The metadata ledger against a real PostgreSQL (127.0.0.1:5432, or the embedded one when that
is absent) and the embedded one.

Each module run gets its own throw-away database, so tests never see another run's rows and
can run in parallel with other suites.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from conftest import captured_warnings, database_url
from pg_helpers import refusing

from millpond.metadata import queries, reads
from millpond.metadata.db import connect, current_revision, head_revision, migrate, resolve_url
from millpond.metadata.embedded import is_running, stop_embedded
from millpond.metadata.ledger import Ledger, LedgerUnavailableError
from millpond.metadata.records import (
    DataTestResults,
    NodeFinished,
    NodeStarted,
    PartitionLanded,
    PartitionLoaded,
    RowCounts,
    RunFinished,
    RunStarted,
    SourceState,
)

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """Create an empty database on the session's PostgreSQL (the machine's, or the embedded
    one on a laptop) for the duration of the block and drop it afterwards."""
    name = f"millpond_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield database_url(server, name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def db_url(pg_server: str) -> Iterator[str]:
    with fresh_database(pg_server) as url:
        migrate(url)
        yield url


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with connect(db_url) as connection:
        yield connection


@pytest.fixture
def ledger(db_url: str, tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(db_url, tmp_path / "ledger-buffer.jsonl") as instance:
        yield instance


def new_id(prefix: str = "run") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- migrations ----------------------------------------------------------------------------


def test_migrate_twice_is_a_no_op_and_builds_the_schema(db_url: str, conn) -> None:
    migrate(db_url)
    migrate(db_url)

    assert current_revision(db_url) == head_revision()
    relations = {
        row[0]
        for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'millpond'"
        )
    }
    assert {
        "runs",
        "node_runs",
        "row_counts",
        "test_results",
        "partitions",
        "source_state",
        "job_status",
    } <= relations


def test_concurrent_migrations_from_several_processes(pg_server: str) -> None:
    with fresh_database(pg_server) as url:
        code = "import sys; from metadata.db import migrate; migrate(sys.argv[1])"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, url],
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        outcomes = [(p.wait(timeout=60), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
        assert [rc for rc, _ in outcomes] == [0, 0, 0], outcomes
        assert current_revision(url) == head_revision()


# --- a run's life ---------------------------------------------------------------------------


def test_full_run_lifecycle(ledger: Ledger, conn) -> None:
    run_id = new_id()
    assert ledger.write(RunStarted(run_id, "prefect", "manual", "dev", flow_run_id="flow-1"))
    ledger.write(NodeStarted(run_id, "ingest.orders", "ingest", 1))
    ledger.write(NodeFinished(run_id, "ingest.orders", 1, "success", 1500, rows=100, bytes=4096))
    ledger.write(NodeStarted(run_id, "model.stg_orders", "dbt_model", 1))
    ledger.write(NodeFinished(run_id, "model.stg_orders", 1, "success", 300, rows=100))
    ledger.write(RowCounts(run_id, {"stg_orders": 100, "fct_sales": 42}))
    ledger.write(
        DataTestResults(
            run_id,
            "model.stg_orders",
            [
                {"test": "not_null_stg_orders_id", "status": "pass", "failures": 0},
                {
                    "test": "unique_stg_orders_id",
                    "status": "fail",
                    "failures": 3,
                    "message": "dups",
                },
            ],
        )
    )

    running = queries.get_run(conn, run_id)
    assert running is not None
    assert running["status"] == "running"
    assert running["finished_at"] is None

    ledger.write(
        RunFinished(run_id, "failed", error="1 test failed", summary={"nodes": 2, "tests": 2})
    )

    run = queries.get_run(conn, run_id)
    assert run is not None
    assert run["orchestrator"] == "prefect"
    assert run["trigger"] == "manual"
    assert run["target"] == "dev"
    assert run["flow_run_id"] == "flow-1"
    assert run["status"] == "failed"
    assert run["error"] == "1 test failed"
    assert run["summary"] == {"nodes": 2, "tests": 2}
    assert run["finished_at"] >= run["started_at"]
    assert run["nodes"] == 2
    assert run["tests_failed"] == 1

    nodes = queries.run_nodes(conn, run_id)
    assert [(n["node_id"], n["kind"], n["status"]) for n in nodes] == [
        ("ingest.orders", "ingest", "success"),
        ("model.stg_orders", "dbt_model", "success"),
    ]
    assert nodes[0]["rows"] == 100
    assert nodes[0]["bytes"] == 4096
    assert nodes[0]["duration_ms"] == 1500
    assert all(n["finished_at"] >= n["started_at"] for n in nodes)

    assert {r["relation"]: r["rows"] for r in queries.row_counts(conn, run_id)} == {
        "stg_orders": 100,
        "fct_sales": 42,
    }
    tests = queries.test_results(conn, run_id)
    assert tests[0]["test"] == "unique_stg_orders_id"  # failures come first
    assert tests[0]["failures"] == 3
    assert tests[0]["message"] == "dups"
    assert {t["test"]: t["status"] for t in tests} == {
        "not_null_stg_orders_id": "pass",
        "unique_stg_orders_id": "fail",
    }

    assert run_id in [r["run_id"] for r in queries.list_runs(conn, limit=50)]


def test_newest_run_is_listed_first(ledger: Ledger, conn) -> None:
    older, newer = new_id(), new_id()
    ledger.write(RunStarted(older, "cli", "manual", "dev"))
    time.sleep(0.01)
    ledger.write(RunStarted(newer, "cli", "manual", "dev"))
    listed = [r["run_id"] for r in queries.list_runs(conn, limit=2)]
    assert listed == [newer, older]
    assert queries.get_run(conn, "no-such-run") is None


def test_resent_records_do_not_duplicate_or_overwrite(ledger: Ledger, conn) -> None:
    run_id = new_id()
    ledger.write(RunStarted(run_id, "airflow", "schedule", "prod"))
    ledger.write(RunStarted(run_id, "cli", "manual", "dev"))  # second start changes nothing
    ledger.write(NodeStarted(run_id, "model.a", "dbt_model", 1))
    ledger.write(NodeStarted(run_id, "model.a", "dbt_model", 1))
    ledger.write(NodeFinished(run_id, "model.a", 1, "success", 10, rows=5))
    ledger.write(NodeFinished(run_id, "model.a", 1, "success", 10, rows=5))
    ledger.write(NodeStarted(run_id, "model.a", "dbt_model", 1))  # late re-send after the finish
    ledger.write(RowCounts(run_id, {"a": 5}))
    ledger.write(RowCounts(run_id, {"a": 6}))
    ledger.write(
        DataTestResults(run_id, "model.a", [{"test": "t", "status": "fail", "failures": 1}])
    )
    ledger.write(
        DataTestResults(run_id, "model.a", [{"test": "t", "status": "pass", "failures": 0}])
    )

    run = queries.get_run(conn, run_id)
    assert run is not None
    assert (run["orchestrator"], run["trigger"], run["target"]) == ("airflow", "schedule", "prod")
    nodes = queries.run_nodes(conn, run_id)
    assert len(nodes) == 1
    assert nodes[0]["status"] == "success"
    assert queries.row_counts(conn, run_id)[0]["rows"] == 6
    assert [(t["test"], t["status"]) for t in queries.test_results(conn, run_id)] == [("t", "pass")]


def test_node_started_creates_its_run(ledger: Ledger, conn) -> None:
    run_id = new_id()
    ledger.write(NodeStarted(run_id, "model.a", "dbt_model", 1))
    run = queries.get_run(conn, run_id)
    assert run is not None
    assert run["status"] == "running"

    ledger.write(RunStarted(run_id, "airflow", "schedule", "prod", flow_run_id="dag-run-7"))
    run = queries.get_run(conn, run_id)
    assert run is not None
    assert run["orchestrator"] == "airflow"
    assert run["flow_run_id"] == "dag-run-7"


def test_retry_and_job_status(ledger: Ledger, conn) -> None:
    node = f"model.{uuid.uuid4().hex[:6]}"
    first = new_id()
    ledger.write(RunStarted(first, "prefect", "manual", "dev"))
    ledger.write(NodeStarted(first, node, "dbt_model", 1))
    ledger.write(NodeFinished(first, node, 1, "failed", 20, error="connection reset"))
    ledger.write(NodeStarted(first, node, "dbt_model", 2))
    ledger.write(NodeFinished(first, node, 2, "success", 25, rows=7))
    ledger.write(RunFinished(first, "success"))

    attempts = queries.run_nodes(conn, first)
    assert [(n["attempt"], n["status"]) for n in attempts] == [(1, "failed"), (2, "success")]
    assert attempts[0]["error"] == "connection reset"

    status = {s["node_id"]: s for s in queries.job_status(conn)}[node]
    assert (status["run_id"], status["attempt"], status["status"]) == (first, 2, "success")
    assert status["rows"] == 7
    assert status["duration_ms"] == 25
    assert status["finished_at"] is not None

    time.sleep(0.01)
    second = new_id()
    ledger.write(RunStarted(second, "prefect", "schedule", "dev"))
    ledger.write(NodeStarted(second, node, "dbt_model", 1))
    ledger.write(NodeFinished(second, node, 1, "skipped", 0))
    status = {s["node_id"]: s for s in queries.job_status(conn)}[node]
    assert (status["run_id"], status["status"]) == (second, "skipped")


def test_invalid_status_is_refused_before_writing(ledger: Ledger) -> None:
    with pytest.raises(ValueError):
        ledger.write(RunFinished(new_id(), "done"))
    with pytest.raises(ValueError):
        ledger.write(NodeFinished(new_id(), "n", 1, "running", 1))
    with pytest.raises(ValueError):
        ledger.write(DataTestResults(new_id(), "n", [{"test": "t", "status": "ok"}]))
    assert not ledger.degraded


def test_partitions(ledger: Ledger, conn) -> None:
    source, table = new_id("src"), "orders"
    landed = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    ledger.write(PartitionLanded(source, table, f"{source}/p1", "sha-a", 10, 1000, landed, "r1"))
    ledger.write(PartitionLanded(source, table, f"{source}/p2", "sha-b", 20, 2000, landed, "r1"))
    ledger.write(PartitionLoaded(f"{source}/p1", datetime(2026, 1, 2, 4, tzinfo=UTC)))

    parts = {p["partition_id"]: p for p in queries.partitions(conn, source, table)}
    assert parts[f"{source}/p1"]["loaded_at"] == datetime(2026, 1, 2, 4, tzinfo=UTC)
    assert parts[f"{source}/p1"]["landed_at"] == landed
    assert (parts[f"{source}/p2"]["rows"], parts[f"{source}/p2"]["bytes"]) == (20, 2000)
    unloaded = queries.partitions(conn, source, table, unloaded_only=True)
    assert [p["partition_id"] for p in unloaded] == [f"{source}/p2"]

    # The same manifest landed again keeps its loaded state; a new manifest must be reloaded.
    ledger.write(PartitionLanded(source, table, f"{source}/p1", "sha-a", 10, 1000, landed, "r2"))
    assert len(queries.partitions(conn, source, table, unloaded_only=True)) == 1
    ledger.write(PartitionLanded(source, table, f"{source}/p1", "sha-c", 11, 1100, landed, "r3"))
    unloaded = queries.partitions(conn, source, table, unloaded_only=True)
    assert sorted(p["partition_id"] for p in unloaded) == [f"{source}/p1", f"{source}/p2"]
    assert len(queries.partitions(conn, source, table)) == 2


def test_source_state(ledger: Ledger) -> None:
    source = new_id("src")
    assert reads.source_cursor(ledger, source, "orders") is None
    ledger.write(SourceState(source, "orders", {"updated_at": "2026-01-01T00:00:00", "id": 5}))
    assert reads.source_cursor(ledger, source, "orders") == {
        "updated_at": "2026-01-01T00:00:00",
        "id": 5,
    }
    ledger.write(SourceState(source, "orders", "2026-02-01"))
    ledger.write(SourceState(source, "items", 17))
    assert reads.source_cursor(ledger, source, "orders") == "2026-02-01"
    assert reads.source_cursor(ledger, source, "items") == 17


def test_threads_share_one_ledger(ledger: Ledger, conn) -> None:
    run_id = new_id()
    ledger.write(RunStarted(run_id, "prefect", "manual", "dev"))

    def node(i: int) -> None:
        ledger.write(NodeStarted(run_id, f"model.m{i}", "dbt_model", 1))
        ledger.write(NodeFinished(run_id, f"model.m{i}", 1, "success", i, rows=i))

    threads = [threading.Thread(target=node, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    nodes = queries.run_nodes(conn, run_id)
    assert sorted(n["rows"] for n in nodes) == list(range(16))
    assert {n["status"] for n in nodes} == {"success"}


# --- when the database is down ----------------------------------------------------------------


def _write_a_run(ledger: Ledger, run_id: str, source: str) -> list[bool]:
    return [
        ledger.write(RunStarted(run_id, "cli", "manual", "dev")),
        ledger.write(NodeStarted(run_id, "model.a", "dbt_model", 1)),
        ledger.write(NodeFinished(run_id, "model.a", 1, "failed", 5, error="boom")),
        ledger.write(NodeStarted(run_id, "model.a", "dbt_model", 2)),
        ledger.write(NodeFinished(run_id, "model.a", 2, "success", 7, rows=3, bytes=30)),
        ledger.write(RowCounts(run_id, {"a": 3})),
        ledger.write(DataTestResults(run_id, "model.a", [{"test": "t1", "status": "warn"}])),
        ledger.write(PartitionLanded(source, "t", f"{source}/p1", "sha", 3, 30, run_id=run_id)),
        ledger.write(PartitionLoaded(f"{source}/p1")),
        ledger.write(SourceState(source, "t", {"max_id": 3})),
        ledger.write(RunFinished(run_id, "success", summary={"ok": True})),
    ]


def test_down_database_buffers_then_flush_writes_the_same_rows(
    db_url: str, conn, tmp_path: Path
) -> None:
    buffer = tmp_path / "ledger-buffer.jsonl"
    run_id, source = new_id(), new_id("src")
    before = datetime.now(UTC)

    with captured_warnings() as warnings, refusing(db_url):
        down = Ledger(db_url, buffer)
        started = time.monotonic()
        results = _write_a_run(down, run_id, source)
        elapsed = time.monotonic() - started
        # The cursor of a source is still known from the buffer while the database is down.
        assert reads.source_cursor(down, source, "t") == {"max_id": 3}
        with pytest.raises(LedgerUnavailableError):
            reads.source_cursor(down, source, "never-set")
    assert not any(results)
    assert len(warnings) == 1
    assert "unreachable" in warnings[0]
    assert elapsed < 10  # buffered without waiting for timeouts per record
    assert down.degraded
    assert down.buffered == len(results)
    assert len(buffer.read_text().splitlines()) == len(results)
    assert queries.get_run(conn, run_id) is None

    time.sleep(0.05)
    up = Ledger(db_url, buffer)
    assert up.flush_buffer() == len(results)
    assert not buffer.exists()
    assert not up.degraded
    assert up.flush_buffer() == 0

    run = queries.get_run(conn, run_id)
    assert run is not None
    assert (run["status"], run["summary"]) == ("success", {"ok": True})
    # Times are those of the original calls, not of the flush.
    assert before <= run["started_at"] <= run["finished_at"] < datetime.now(UTC)
    nodes = queries.run_nodes(conn, run_id)
    assert [(n["attempt"], n["status"], n["rows"]) for n in nodes] == [
        (1, "failed", None),
        (2, "success", 3),
    ]
    assert queries.row_counts(conn, run_id)[0]["rows"] == 3
    assert queries.test_results(conn, run_id)[0]["status"] == "warn"
    partition = queries.partitions(conn, source, "t")[0]
    assert partition["loaded_at"] is not None
    assert reads.source_cursor(up, source, "t") == {"max_id": 3}
    status = {s["node_id"]: s for s in queries.job_status(conn) if s["run_id"] == run_id}
    assert status["model.a"]["attempt"] == 2

    # Flushing the same records again (a crash after commit, before removal) changes nothing.
    with refusing(db_url):
        _write_a_run(Ledger(db_url, buffer), run_id, source)
    assert Ledger(db_url, buffer).flush_buffer() == len(results)
    assert len(queries.run_nodes(conn, run_id)) == 2
    assert len(queries.partitions(conn, source, "t")) == 1


def test_writes_after_an_outage_keep_their_order(db_url: str, conn, tmp_path: Path) -> None:
    """A Ledger with pending records flushes them before its next live write."""
    buffer = tmp_path / "buffer.jsonl"
    run_id = new_id()
    with refusing(db_url):
        Ledger(db_url, buffer).write(NodeStarted(run_id, "model.a", "dbt_model", 1))

    live = Ledger(db_url, buffer)
    assert live.write(NodeFinished(run_id, "model.a", 1, "success", 3))
    assert not buffer.exists()
    assert [n["status"] for n in queries.run_nodes(conn, run_id)] == ["success"]


def test_late_replayed_start_does_not_undo_a_finish(db_url: str, conn, tmp_path: Path) -> None:
    """One worker buffered 'started' while another already recorded the finish."""
    run_id = new_id()
    worker_buffer = tmp_path / "worker.jsonl"
    with refusing(db_url):
        Ledger(db_url, worker_buffer).write(NodeStarted(run_id, "model.a", "dbt_model", 1))
    Ledger(db_url, tmp_path / "other.jsonl").write(NodeFinished(run_id, "model.a", 1, "success", 9))

    assert Ledger(db_url, worker_buffer).flush_buffer() == 1
    nodes = queries.run_nodes(conn, run_id)
    assert [(n["status"], n["kind"]) for n in nodes] == [("success", "dbt_model")]


def test_unreadable_buffer_line_is_set_aside(db_url: str, conn, tmp_path: Path) -> None:
    buffer = tmp_path / "buffer.jsonl"
    run_id = new_id()
    with refusing(db_url):
        down = Ledger(db_url, buffer)
        down.write(RunStarted(run_id, "cli", "manual", "dev"))
        with buffer.open("a") as handle:
            handle.write('{"op": "start_run", "args": {"run_id": \n')  # torn write
        down.write(RunFinished(run_id, "success"))

    up = Ledger(db_url, buffer)
    assert up.flush_buffer() == 2
    assert not buffer.exists()
    assert up.rejected_path.exists()
    run = queries.get_run(conn, run_id)
    assert run is not None
    assert run["status"] == "success"


# --- embedded PostgreSQL ------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_embedded_server_runs_the_ledger(tmp_path: Path) -> None:
    """No external server needed: start, migrate, write, share with a second process, stop."""
    pgdata = tmp_path / "pg"
    try:
        url = resolve_url("embedded", tmp_path)
        assert is_running(pgdata)
        migrate(url)
        migrate(url)
        with Ledger(url, tmp_path / "buffer.jsonl") as ledger:
            run_id = new_id()
            assert ledger.write(RunStarted(run_id, "cli", "manual", "dev"))
            assert ledger.write(NodeStarted(run_id, "model.a", "dbt_model", 1))
            assert ledger.write(NodeFinished(run_id, "model.a", 1, "success", 4, rows=2))
            assert ledger.write(RunFinished(run_id, "success"))
            assert not ledger.degraded

        # A second process reuses the same server; its exit does not stop it while we use it.
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from metadata.db import resolve_url;"
                "print(resolve_url('embedded', Path(sys.argv[1])))",
                str(tmp_path),
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert other.returncode == 0, other.stderr
        assert other.stdout.strip() == url
        assert is_running(pgdata)

        with connect(url) as conn:
            run = queries.get_run(conn, run_id)
            assert run is not None
            assert run["status"] == "success"
            assert [n["status"] for n in queries.run_nodes(conn, run_id)] == ["success"]
    finally:
        stop_embedded(pgdata)
    assert not is_running(pgdata)
