"""The warehouse writer lock: threads and processes wait their turn instead of failing."""

from __future__ import annotations

import fcntl
import itertools
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import pytest

from millpond.targets.duckdb.lock import open_warehouse, warehouse_lock

REPO = Path(__file__).resolve().parents[2]


def test_open_warehouse_gives_a_writable_connection_and_closes_it(tmp_path):
    path = tmp_path / "w" / "warehouse.duckdb"

    with open_warehouse(path) as con:
        con.execute("create table t as select 1 as x")

    with pytest.raises(duckdb.ConnectionException):
        con.execute("select 1")
    with duckdb.connect(str(path), read_only=True) as reader:
        assert reader.execute("select x from t").fetchall() == [(1,)]


def test_two_threads_are_serialized(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with open_warehouse(path) as con:
        con.execute("create table log (who varchar, started double)")
    spans: dict[str, tuple[float, float]] = {}
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            with open_warehouse(path) as con:
                start = time.monotonic()
                con.execute("insert into log values (?, ?)", [name, start])
                time.sleep(0.2)
                spans[name] = (start, time.monotonic())
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"t{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert errors == []
    ordered = sorted(spans.values())
    assert len(ordered) == 3
    for (_, end), (next_start, _) in itertools.pairwise(ordered):
        assert end <= next_start
    with duckdb.connect(str(path), read_only=True) as reader:
        assert reader.execute("select count(*) from log").fetchone() == (3,)


def test_the_lock_is_reentrant_within_a_thread(tmp_path):
    path = tmp_path / "warehouse.duckdb"

    with warehouse_lock(path), warehouse_lock(path), open_warehouse(path) as con:
        con.execute("create table t as select 1 as x")

    with open_warehouse(path) as con:
        assert con.execute("select x from t").fetchall() == [(1,)]


def test_waiting_too_long_for_another_holder_raises_timeout(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with open(f"{path}.lock", "a+") as other:  # another open file: like another process
        fcntl.flock(other, fcntl.LOCK_EX)

        started = time.monotonic()
        with pytest.raises(TimeoutError, match="warehouse lock"), warehouse_lock(path, 0.3):
            pass

    assert time.monotonic() - started < 5


SECOND_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from millpond.targets.duckdb.lock import open_warehouse

    with open_warehouse(Path(sys.argv[1])) as con:
        con.execute("insert into t values ('second process')")
    print("done")
    """
)


def test_a_second_process_waits_for_the_lock_and_then_writes(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with open_warehouse(path) as con:
        con.execute("create table t (who varchar)")
        con.execute("insert into t values ('first process')")
        second = subprocess.Popen(
            [sys.executable, "-c", SECOND_WRITER, str(path)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # Proof that it is blocked on our lock: it says it is waiting, and is still running.
            assert second.stderr is not None
            line = second.stderr.readline()
            assert "waiting for the warehouse lock" in line
            assert second.poll() is None
        except BaseException:
            second.kill()
            raise

    stdout, stderr = second.communicate(timeout=30)
    assert second.returncode == 0, stderr
    assert stdout.strip() == "done"
    with duckdb.connect(str(path), read_only=True) as reader:
        rows = reader.execute("select who from t order by who").fetchall()
    assert rows == [("first process",), ("second process",)]
