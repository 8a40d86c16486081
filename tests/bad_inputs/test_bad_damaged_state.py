"""Damaged state, made for real, named by file and repaired (issue 23, build item 3).

Two tiers:
- unit cases (table-driven, no run): damaged manifests, warehouse files and snapshots are
  named by file; storage errors while landing are infrastructure errors, not rejections;
- e2e cases: one demo run at the smallest scale per module, its state copied back before
  every case (project folder and ledger database); each case damages it as a person or a
  crash would, then asserts that the message names the file, that the run is not green over
  broken state, and that `millpond doctor --repair` (or the run itself) brings back a good run.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psycopg
import pytest
from conftest import database_url, millpond, write_project

from millpond.ingest.lake import Lake, ManifestDamaged
from millpond.ingest.storage_errors import StorageError, raise_if_storage
from millpond.targets.duckdb.damage import WarehouseDamaged, open_checked
from millpond.targets.duckdb.health import snapshot_damage, warehouse_damage
from millpond.targets.duckdb.publish import orphan_temp_files, remove_orphans

# --- unit cases: damaged manifests ----------------------------------------------------------

GOOD_MANIFEST = {
    "partition_id": "erp/orders/ingest_date=2026-01-01/run=r1",
    "source": "erp",
    "table": "orders",
    "run_id": "r1",
    "ingest_date": "2026-01-01",
    "landed_at": "2026-01-01T00:00:00+00:00",
    "rows": 0,
    "bytes": 0,
    "schema": [],
}

MANIFEST_CASES = {
    "truncated": json.dumps(GOOD_MANIFEST)[:40],
    "empty": "",
    "a list": "[1, 2, 3]",
    "a field missing": json.dumps({k: v for k, v in GOOD_MANIFEST.items() if k != "rows"}),
    "an unknown field": json.dumps({**GOOD_MANIFEST, "bogus": 1}),
    "not utf-8": "\udcff",
    "null": "null",
}


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_an_unreadable_manifest_is_named_with_the_ways_out(tmp_path: Path, case: str) -> None:
    lake = Lake.from_url(f"file://{tmp_path / 'lake'}")
    folder = Path(lake.partition_dir("erp", "orders", "2026-01-01", "r1"))
    folder.mkdir(parents=True)
    manifest = folder / "_manifest.json"
    manifest.write_bytes(MANIFEST_CASES[case].encode("utf-8", "surrogateescape"))
    before = sorted(p.name for p in folder.iterdir())

    with pytest.raises(ManifestDamaged) as raised:
        lake.manifests("erp", "orders")

    message = str(raised.value)
    assert str(manifest) in message
    assert "millpond doctor --repair" in message
    assert "millpond lake drop erp/orders/ingest_date=2026-01-01/run=r1" in message
    assert raised.value.retryable is False
    good, damaged = lake.scan("erp", "orders")  # what `lake ls` and doctor see
    assert good == [] and [d.partition_id for d in damaged] == [GOOD_MANIFEST["partition_id"]]
    assert sorted(p.name for p in folder.iterdir()) == before  # reading changed nothing


# --- unit cases: damaged warehouse files ----------------------------------------------------


def _real_warehouse(path: Path) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("create schema marts")
        con.execute(
            "create table marts.t as select range as id, 'x' || range as v from range(200000)"
        )


def _flip(path: Path, offset: int, size: int = 4096) -> None:
    with path.open("r+b") as out:
        out.seek(offset)
        out.write(b"\xff" * size)


WAREHOUSE_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing": (lambda p: None, "missing"),
    "empty file": (lambda p: p.write_bytes(b""), "unreadable"),
    "not a database": (lambda p: p.write_text("hello\n" * 1000), "unreadable"),
    "truncated": (lambda p: (_real_warehouse(p), os.truncate(p, 20000)), "unreadable"),
    "damaged catalog block": (  # written last: the file's last block
        lambda p: (_real_warehouse(p), _flip(p, p.stat().st_size - 262144 + 100)),
        "unreadable",
    ),
    "damaged data block": (lambda p: (_real_warehouse(p), _flip(p, 12288 + 100)), "unreadable"),
}


@pytest.mark.parametrize("case", sorted(WAREHOUSE_CASES))
def test_a_damaged_warehouse_file_is_named(tmp_path: Path, case: str) -> None:
    damage, problem = WAREHOUSE_CASES[case]
    path = tmp_path / "warehouse.duckdb"
    damage(path)
    before = path.read_bytes() if path.exists() else None

    found = warehouse_damage(path, deep=True)

    assert found is not None and found.problem == problem
    assert str(path) in found.message()
    assert (path.read_bytes() if path.exists() else None) == before  # checked, not changed


def test_a_damaged_data_block_is_found_by_the_deep_check_only(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    _real_warehouse(path)
    _flip(path, 12288 + 100)  # the first block: the table's data, not the catalog

    assert warehouse_damage(path) is None  # the run start's check: the catalog reads
    deep = warehouse_damage(path, deep=True)
    assert deep is not None and "marts.t" in deep.detail and str(path) in deep.message()


def test_opening_a_damaged_warehouse_names_the_file_and_the_repair(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    path.write_text("not a database")

    with pytest.raises(WarehouseDamaged) as raised:
        open_checked(path)

    assert str(path) in str(raised.value) and "millpond doctor --repair" in str(raised.value)
    assert raised.value.retryable is False


def test_a_healthy_warehouse_has_no_damage(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    _real_warehouse(path)
    assert warehouse_damage(path, deep=True) is None


# --- unit cases: snapshots and temp files ---------------------------------------------------


def _dangling(folder: Path) -> None:
    (folder / "current").symlink_to("gone.duckdb")


def _garbage(folder: Path) -> None:
    (folder / "run1.duckdb").write_text("not a database")
    (folder / "current").symlink_to("run1.duckdb")


SNAPSHOT_CASES: dict[str, tuple[Callable[[Path], None], bool, str | None]] = {
    "dangling current": (_dangling, False, "dangling"),
    "current of garbage": (_garbage, False, "unreadable"),
    "no current after a publish": (lambda f: None, True, "missing"),
    "no current before any publish": (lambda f: None, False, None),
}


@pytest.mark.parametrize("case", sorted(SNAPSHOT_CASES))
def test_a_broken_current_snapshot_is_named(tmp_path: Path, case: str) -> None:
    damage, expected, problem = SNAPSHOT_CASES[case]
    damage(tmp_path)

    found = snapshot_damage(tmp_path, expected)

    assert (found.problem if found else None) == problem
    if found:
        assert str(tmp_path) in found.message()


def test_temp_files_of_a_killed_publish_are_found_and_removed(tmp_path: Path) -> None:
    (tmp_path / ".run1.duckdb.tmp").write_bytes(b"x" * 1000)
    (tmp_path / ".run1.duckdb.tmp.wal").write_bytes(b"x" * 10)
    (tmp_path / ".current.tmp").symlink_to("run1.duckdb")
    (tmp_path / "run0.duckdb").write_bytes(b"keep")

    assert [p.name for p in orphan_temp_files(tmp_path)] == [
        ".current.tmp",
        ".run1.duckdb.tmp",
        ".run1.duckdb.tmp.wal",
    ]
    assert remove_orphans(tmp_path) == (3, 1010 + len("run1.duckdb"))
    assert [p.name for p in tmp_path.iterdir()] == ["run0.duckdb"]


# --- unit cases: storage errors while landing are not rejections ----------------------------


def _wrapped(inner: BaseException) -> BaseException:
    """An error as a reader raises it: its own type, raised while handling the I/O error."""
    try:
        try:
            raise inner
        except BaseException:
            raise ValueError("orders.csv: cannot read the file") from None
    except ValueError as outer:
        return outer


STORAGE_CASES: dict[str, tuple[BaseException, str]] = {
    "ENOSPC": (OSError(errno.ENOSPC, "No space left on device"), "disk full"),
    "EDQUOT": (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk quota exceeded"),
    "EROFS": (OSError(errno.EROFS, "Read-only file system"), "read-only file system"),
    "EIO": (OSError(errno.EIO, "Input/output error"), "I/O error"),
    "DuckDB's text, wrapped": (
        _wrapped(duckdb.IOException('Could not write file "x": No space left on device')),
        "disk full",
    ),
}


@pytest.mark.parametrize("case", sorted(STORAGE_CASES))
def test_a_storage_error_fails_the_node_naming_path_and_cause(case: str) -> None:
    error, said = STORAGE_CASES[case]

    with pytest.raises(StorageError) as raised:
        raise_if_storage(error, "/lake/raw/erp/orders/part-00000.parquet", "orders.csv")

    message = str(raised.value)
    assert "/lake/raw/erp/orders/part-00000.parquet" in message and said in message
    assert "orders.csv" in message and "not rejected" in message
    assert raised.value.retryable is True


def test_a_file_error_is_not_a_storage_error() -> None:
    raise_if_storage(ValueError("orders.csv, line 3: bad date"), "/lake/x.parquet", "orders.csv")


def _mount_small_disk(folder: Path) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def test_a_full_disk_while_landing_is_an_infrastructure_error(tmp_path: Path) -> None:
    """A real full disk: a 256 KiB tmpfs as the lake (needs root; else skipped)."""
    from millpond.ingest.landing import land_table
    from millpond.ingest.sources.files import FilesSource
    from millpond.ingest.sources.files.config import FilesSourceConfig

    disk = tmp_path / "small"
    if not _mount_small_disk(disk):
        pytest.skip("cannot mount a small tmpfs here (needs root): the simulated cases cover it")
    try:
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        lines = ["id,name,amount"] + [f"{i},{uuid.uuid4().hex},{i * 1.5}" for i in range(60000)]
        (inbox / "orders.csv").write_text("\n".join(lines) + "\n")
        lake = Lake.from_url(f"file://{disk / 'lake'}")
        config = FilesSourceConfig(kind="files", path=str(inbox), tables=["orders"])

        with pytest.raises(StorageError) as raised:
            land_table(lake, "erp", FilesSource("erp", config, inbox), "orders", "r1")

        assert "disk full" in str(raised.value) and str(disk / "lake") in str(raised.value)
        assert lake.manifests("erp", "orders") == []  # nothing half-landed, nothing rejected
        assert not list((disk / "lake").rglob("*.parquet"))
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# --- e2e cases: a real run's state, damaged and repaired ------------------------------------


@dataclass
class State:
    """The module's demo run: where it lives, its pristine copy and ledger databases."""

    project: Path
    pristine: Path
    server: str
    golden_db: str
    case_db: str

    @property
    def env(self) -> dict[str, str]:
        return {"MILLPOND_METADATA__URL": database_url(self.server, self.case_db)}

    @property
    def state(self) -> Path:
        return self.project / ".millpond"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return millpond(self.project, *args, env=self.env)

    def ledger(self, sql: str) -> list[tuple[object, ...]]:
        with psycopg.connect(database_url(self.server, self.case_db)) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchall() if cursor.description else []


def _admin(server: str, *statements: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture(scope="module")
def demo_state(
    tmp_path_factory: pytest.TempPathFactory, demo_files: Path, prefect_api: str, pg_server: str
) -> Iterator[State]:
    base = tmp_path_factory.mktemp("damaged")
    project = write_project(base / "project", demo_files)
    suffix = uuid.uuid4().hex[:8]
    state = State(project, base / "pristine", pg_server, f"dmg_gold_{suffix}", f"dmg_{suffix}")
    _admin(pg_server, f'create database "{state.golden_db}"')
    env = {"MILLPOND_METADATA__URL": database_url(pg_server, state.golden_db)}
    first = millpond(project, "run", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    shutil.copytree(project, state.pristine, symlinks=True)
    yield state
    _admin(
        pg_server,
        f'drop database if exists "{state.case_db}" with (force)',
        f'drop database if exists "{state.golden_db}" with (force)',
    )


@pytest.fixture
def fresh(demo_state: State) -> State:
    """The demo run's state as it was, at the same path (raw views name lake files by path)."""
    shutil.rmtree(demo_state.project)
    shutil.copytree(demo_state.pristine, demo_state.project, symlinks=True)
    _admin(
        demo_state.server,
        f'drop database if exists "{demo_state.case_db}" with (force)',
        f'create database "{demo_state.case_db}" template "{demo_state.golden_db}"',
    )
    return demo_state


def _orders_partition(state: State) -> Path:
    (folder,) = (state.state / "lake" / "raw" / "erp" / "orders").glob("*/run=*")
    return folder


def _partition_id(state: State, folder: Path) -> str:
    return str(folder.relative_to(state.state / "lake" / "raw"))


def _assert_good_run(state: State) -> None:
    """A run over the repaired state is green, and readers can open what it published."""
    result = state.run("run")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    with duckdb.connect(str(state.state / "published" / "current"), read_only=True) as con:
        assert con.execute("select count(*) from marts.fct_orders").fetchone()[0] > 0


@pytest.mark.e2e
def test_deleted_warehouse_rebuilds_everything_and_says_why(fresh: State) -> None:
    warehouse = fresh.state / "warehouse.duckdb"
    warehouse.unlink()

    result = fresh.run("run")

    assert result.returncode == 0, result.stderr[-3000:]
    assert f"the warehouse {warehouse} is missing" in result.stdout  # the summary says why
    assert f"the warehouse {warehouse} is missing" in result.stderr  # and the warning
    assert "33 unchanged" not in result.stdout and "nothing new" not in result.stdout
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select count(*) from raw.erp__orders").fetchone()[0] > 0
        assert con.execute("select count(*) from marts.fct_orders").fetchone()[0] > 0
    again = fresh.run("run")
    assert again.returncode == 0 and "nothing new" in again.stdout  # settled afterwards


@pytest.mark.e2e
def test_corrupt_warehouse_fails_naming_the_file_until_doctor_repairs_it(fresh: State) -> None:
    warehouse = fresh.state / "warehouse.duckdb"
    _flip(warehouse, 12288 + 100)

    result = fresh.run("run")  # nothing new: would have been settled from the ledger

    assert result.returncode == 1
    assert str(warehouse) in result.stderr and "millpond doctor --repair" in result.stderr
    assert "Traceback" not in result.stderr
    checked = fresh.run("doctor")
    assert checked.returncode == 1 and str(warehouse) in checked.stdout
    repaired = fresh.run("doctor", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr[-2000:]
    assert "run `millpond run`" in repaired.stdout
    assert list(fresh.state.glob("warehouse.duckdb.damaged-*"))  # kept aside, not deleted
    _assert_good_run(fresh)


@pytest.mark.e2e
def test_dangling_current_is_published_again_and_temp_files_removed(fresh: State) -> None:
    published = fresh.state / "published"
    (published / os.readlink(published / "current")).unlink()
    orphan = published / ".20260101T000000Z-dead.duckdb.tmp"
    orphan.write_bytes(b"x" * 100_000)
    Path(f"{orphan}.wal").write_bytes(b"x")

    checked = fresh.run("doctor")
    assert checked.returncode == 1
    assert str(published / "current") in checked.stdout and orphan.name in checked.stdout

    result = fresh.run("run")  # nothing new but for readers: must publish, not settle

    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{published / 'current'} is dangling" in result.stderr
    assert "nothing new" not in result.stdout
    assert not orphan.exists() and not Path(f"{orphan}.wal").exists()  # the publish cleaned
    _assert_good_run(fresh)
    assert fresh.run("doctor").returncode == 0


@pytest.mark.e2e
def test_partition_not_marked_loaded_is_reconciled(fresh: State) -> None:
    fresh.ledger("update millpond.partitions set loaded_at = null where table_name = 'orders'")

    checked = fresh.run("doctor")
    assert checked.returncode == 1 and "partitions/erp.orders" in checked.stdout

    first = fresh.run("run")  # the load finds it in the warehouse's own bookkeeping
    assert first.returncode == 0, first.stderr[-3000:]
    rows = fresh.ledger(
        "select count(*) from millpond.partitions where table_name = 'orders' and loaded_at is null"
    )
    assert rows == [(0,)]
    second = fresh.run("run")
    assert second.returncode == 0 and "nothing new" in second.stdout


@pytest.mark.e2e
def test_truncated_manifest_is_named_listed_and_repaired(fresh: State) -> None:
    folder = _orders_partition(fresh)
    manifest = folder / "_manifest.json"
    manifest.write_text(manifest.read_text()[:100])
    partition = _partition_id(fresh, folder)

    result = fresh.run("run")
    assert result.returncode == 1
    assert str(manifest) in result.stderr and "JSONDecodeError" in result.stderr
    assert "Traceback" not in result.stderr
    listed = fresh.run("lake", "ls", "erp.orders")
    assert listed.returncode == 1 and f"damaged: manifest {manifest}" in listed.stdout

    repaired = fresh.run("doctor", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr[-2000:]
    assert (fresh.state / "lake" / "_damaged" / partition / "_manifest.json").exists()
    _assert_good_run(fresh)  # the inbox still has orders.csv: landed again


@pytest.mark.e2e
def test_truncated_manifest_can_be_dropped(fresh: State) -> None:
    folder = _orders_partition(fresh)
    (folder / "_manifest.json").write_text("{")

    dropped = fresh.run("lake", "drop", _partition_id(fresh, folder))

    assert dropped.returncode == 0, dropped.stderr
    assert not folder.exists()
    listed = fresh.run("lake", "ls", "erp.orders")  # out of the warehouse too (a good run
    assert listed.returncode == 0, listed.stdout  # after it: the manifest cases above)
    assert "no partitions" in listed.stdout


@pytest.mark.e2e
def test_deleted_partition_folder_gives_clear_messages(fresh: State) -> None:
    folder = _orders_partition(fresh)
    partition = _partition_id(fresh, folder)
    shutil.rmtree(folder)

    backfill = fresh.run(
        "backfill", "--source", "erp", "--from", "2000-01-01", "--to", "2100-01-01"
    )
    assert backfill.returncode == 2 and "Traceback" not in backfill.stderr
    assert partition in backfill.stderr and "millpond lake drop" in backfill.stderr
    result = fresh.run("run")
    assert result.returncode == 1 and f"millpond lake drop {partition}" in result.stderr
    listed = fresh.run("lake", "ls", "erp.orders")
    assert "gone: its folder is not in the lake" in listed.stdout

    dropped = fresh.run("lake", "drop", partition)
    assert dropped.returncode == 0, dropped.stderr
    again = fresh.run("lake", "drop", partition)
    assert again.returncode == 2 and str(folder) in again.stderr
    _assert_good_run(fresh)


def test_doctor_is_in_the_help() -> None:
    from typer.testing import CliRunner

    from millpond.cli.main import app

    listed = CliRunner().invoke(app, ["--help"])
    assert listed.exit_code == 0 and "doctor" in listed.output
    own = CliRunner().invoke(app, ["doctor", "--help"])
    assert own.exit_code == 0 and "--repair" in own.output and "docs/recovery.md" in own.output
