"""Faults a real machine meets, on a tiny project (five order rows, the acme dbt project):
`kill -9` at several points of every stage, the ledger's PostgreSQL killed mid-run, the S3
server cut mid-landing, a full disk. After each, the next run is clean and green, nothing is
half-landed or loaded twice, and killed runs are closed `abandoned`.

A run is stopped at an exact point by tests/faults/paused_millpond.py (the real CLI, one
thread held at that point) and killed there with SIGKILL, as `kill -9` would. What
tests/e2e/test_run_lifecycle.py covers already (a kill while any node runs, the lease) is not
repeated; this file adds the named points of each stage and the servers going away.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from conftest import (
    S3_KEY_ID,
    S3_SECRET,
    free_port,
    millpond,
    s3_client,
    write_acme_project,
)
from psycopg.rows import dict_row

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
# The acme inbox: five orders, 2 FR, 2 DE, 1 NL; revenue 43.75 in all.
ORDERS, REVENUE = 5, 43.75


def tiny_project(root: Path, extra: str = "") -> Path:
    return write_acme_project(root, extra)


@pytest.fixture
def acme(tmp_path: Path) -> Iterator[Path]:
    root = tiny_project(tmp_path / "acme")
    yield root
    millpond(root, "down")


def start_paused(root: Path, point: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`millpond run` held at `point`; returns once it is there."""
    folder = root / ".fault"
    folder.mkdir(exist_ok=True)
    run = subprocess.Popen(
        [sys.executable, str(HERE / "paused_millpond.py"), point, str(folder), "run"],
        cwd=root,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=open(folder / f"{point}.log", "wb"),  # noqa: SIM115 (the child owns it)
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not (folder / f"{point}.reached").exists():
        if run.poll() is not None:
            raise AssertionError(f"ended before {point}: {(folder / f'{point}.log').read_text()}")
        assert time.monotonic() < deadline, f"never reached {point}"
        time.sleep(0.05)
    return run


def go_on(root: Path, point: str) -> None:
    (root / ".fault" / f"{point}.go").touch()


def kill_9(run: subprocess.Popen[bytes]) -> None:
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()


def ledger(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def published(root: Path) -> tuple[int, float]:
    """Orders and revenue in the published marts, as a reader sees them."""
    current = root / ".millpond" / "published" / "current"
    with duckdb.connect(str(current), read_only=True) as con:
        orders, revenue = con.execute(
            "select sum(order_count), sum(revenue) from main.orders_by_country"
        ).fetchone()  # type: ignore[misc]
    return int(orders), float(revenue)


def half_landed(lake_files: list[str]) -> list[str]:
    """Partition folders holding files but no manifest (a landing that never finished);
    S3's folder markers (keys ending in `/`) hold nothing."""
    folders = {
        str(Path(f).parent)
        for f in lake_files
        if "raw/" in f and "/run=" in f and not f.endswith("/")
    }
    return sorted(f for f in folders if f"{f}/_manifest.json" not in lake_files)


def local_lake(root: Path) -> list[str]:
    lake = root / ".millpond" / "lake"
    return [str(p.relative_to(lake)) for p in lake.rglob("*") if p.is_file()]


# --- kill -9 at every stage --------------------------------------------------------------------

# Each run is killed at its point; the next one starts by closing it `abandoned` and redoes
# what it left, up to its own point: so each run also checks the recovery from the kill
# before it, and the last, unkilled run must be green.
POINTS = ["landing", "landed", "load", "loaded", "dbt", "publish", "switch"]


def test_kill_9_at_every_stage_then_the_next_run_is_green_and_nothing_is_half_done(
    acme: Path, machine_pg: str, prefect_api: str
) -> None:
    env = {"MILLPOND_METADATA__URL": machine_pg}
    killed: dict[str, str] = {}
    for point in POINTS:
        run = start_paused(acme, point, env)
        if point == "landing":  # the parts are in the lake, the manifest is not
            assert half_landed(local_lake(acme)), local_lake(acme)
        kill_9(run)
        [row] = ledger(machine_pg, "select run_id from millpond.runs where pid = %s", run.pid)
        killed[point] = row["run_id"]

    green = millpond(acme, "run", env=env)
    assert green.returncode == 0, green.stdout + green.stderr
    assert published(acme) == (ORDERS, REVENUE)  # every row once: none lost, none twice

    runs = {r["run_id"]: r for r in ledger(machine_pg, "select * from millpond.runs")}
    for point, run_id in killed.items():
        assert runs[run_id]["status"] == "abandoned", (point, runs[run_id])
        assert runs[run_id]["finished_at"] is not None
    nodes = ledger(machine_pg, "select status from millpond.node_runs where status = 'running'")
    assert nodes == []
    assert half_landed(local_lake(acme)) == []
    # The kills after the manifest and after the warehouse's commit left no partition the
    # ledger does not know is loaded (else every run with nothing new would start a flow).
    partitions = ledger(machine_pg, "select partition_id, loaded_at from millpond.partitions")
    manifests = [f for f in local_lake(acme) if f.endswith("_manifest.json")]
    assert len(partitions) == len(manifests) == 1, (partitions, manifests)
    assert partitions[0]["loaded_at"] is not None
    # The kill mid-publish left no half-written snapshot behind once a publish succeeded.
    leftovers = [p.name for p in (acme / ".millpond" / "published").iterdir() if ".tmp" in p.name]
    assert leftovers == []

    again = millpond(acme, "run", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing new: nothing landed, loaded, rebuilt or published" in again.stdout, again.stdout
    assert published(acme) == (ORDERS, REVENUE)


# --- the ledger's PostgreSQL killed mid-run ------------------------------------------------------


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split()[0])


def test_a_ledger_server_killed_mid_run_the_run_completes_buffers_and_flushes_later(
    tmp_path: Path, prefect_api: str
) -> None:
    from millpond.metadata.buffer import buffer_path
    from millpond.metadata.embedded import start_embedded, stop_embedded

    data_dir = tmp_path / "ledger-pg"
    url = start_embedded(data_dir, keep_running=True)
    root = tiny_project(tmp_path / "acme")
    env = {"MILLPOND_METADATA__URL": url}
    try:
        run = start_paused(root, "ledger", env)  # extract done and recorded, load not begun
        os.kill(postmaster_pid(data_dir), signal.SIGKILL)
        go_on(root, "ledger")
        run.wait(600)
        log = (root / ".fault" / "ledger.log").read_text()
        assert run.returncode == 0, log  # the data does not depend on the ledger
        buffer = buffer_path(root / ".millpond", url)  # the buffer of this very ledger
        assert buffer.is_file() and buffer.stat().st_size > 0
        assert published(root) == (ORDERS, REVENUE)

        url = start_embedded(data_dir, keep_running=True)  # the server is back
        again = millpond(root, "run", env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        runs = ledger(url, "select run_id, status from millpond.runs order by started_at")
        assert [r["status"] for r in runs] == ["success", "success"], runs
        nodes = ledger(
            url,
            "select node_id, status from millpond.node_runs where run_id = %s",
            runs[0]["run_id"],
        )
        assert {n["node_id"]: n["status"] for n in nodes}["publish"] == "success"
        assert not buffer.exists() or buffer.stat().st_size == 0
    finally:
        millpond(root, "down")
        stop_embedded(data_dir)


# --- the S3 server cut mid-landing -------------------------------------------------------------


def test_an_s3_server_cut_mid_landing_leaves_nothing_half_landed(
    tmp_path: Path, machine_pg: str, prefect_api: str
) -> None:
    from moto.server import ThreadedMotoServer

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server: ThreadedMotoServer | None = ThreadedMotoServer(
        ip_address="127.0.0.1", port=port, verbose=False
    )
    server.start()
    client = s3_client(endpoint)
    client.create_bucket(Bucket="cut-lake")
    root = tiny_project(
        tmp_path / "acme",
        f"lake:\n  url: s3://cut-lake/lake\n  endpoint_url: {endpoint}\n"
        "  access_key_id: ${S3_KEY_ID}\n  secret_access_key: ${S3_SECRET}\n",
    )
    env = {
        "MILLPOND_METADATA__URL": machine_pg,
        "S3_KEY_ID": S3_KEY_ID,
        "S3_SECRET": S3_SECRET,
        "AWS_EC2_METADATA_DISABLED": "true",
    }

    def keys() -> list[str]:
        return [o["Key"] for o in client.list_objects_v2(Bucket="cut-lake").get("Contents", [])]

    try:
        run = start_paused(root, "landing", env)
        assert half_landed(keys()), keys()  # parts on S3, no manifest yet
        server.stop()
        server = None  # stopped: a second stop() would wait for ever
        go_on(root, "landing")
        run.wait(600)
        log = (root / ".fault" / "landing.log").read_text()
        assert run.returncode == 1, log
        assert "lake.endpoint_url" in log, log  # the message names the key, not a curl code

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        assert half_landed(keys())  # what the cut left: never a partition (no manifest)
        green = millpond(root, "run", env=env)
        assert green.returncode == 0, green.stdout + green.stderr
        assert half_landed(keys()) == []
        assert published(root) == (ORDERS, REVENUE)
    finally:
        if server is not None:
            server.stop()
        millpond(root, "down")


# --- a full disk -------------------------------------------------------------------------------


def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


def test_a_full_disk_under_the_lake_fails_the_run_and_the_next_run_is_green(
    acme: Path, machine_pg: str, prefect_api: str
) -> None:
    """The lake on a 1 MB tmpfs filled up: the extract fails (nothing half-landed, no
    partition), the ledger says why; once space is freed the next run lands and is green."""
    if not can_mount():
        pytest.skip("mounting a small tmpfs needs root (mount -t tmpfs)")
    lake = acme / ".millpond" / "lake"
    lake.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(lake)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"this machine does not allow a tmpfs mount: {mounted.stderr.decode()}")
    env = {"MILLPOND_METADATA__URL": machine_pg}
    try:
        filler = lake / "filler"
        with filler.open("wb") as out:
            try:
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            except OSError:
                pass
        full = millpond(acme, "run", env=env)
        assert full.returncode == 1, full.stdout + full.stderr
        output = full.stdout + full.stderr
        assert "No space left on device" in output or "disk is full" in output, output
        assert half_landed(local_lake(acme)) == []
        [run] = ledger(machine_pg, "select status, error from millpond.runs")
        assert run["status"] == "failed"
        # A full disk is not the file's fault: it must not be recorded as a rejected file.
        rejected = [p.name for p in (lake / "rejected").rglob("*") if p.is_file()]

        filler.unlink()
        green = millpond(acme, "run", env=env)
        assert green.returncode == 0, green.stdout + green.stderr
        assert published(acme) == (ORDERS, REVENUE)
        assert half_landed(local_lake(acme)) == []
        if rejected:
            pytest.xfail(
                "known (issue 23, landing): a full disk is handled as a rejected file "
                f"({rejected} left in the lake; the run's error: {run['error']})"
            )
    finally:
        millpond(acme, "down")
        subprocess.run(["umount", "-l", str(lake)], check=False)
