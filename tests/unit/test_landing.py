"""Extract: inbox files land as immutable raw partitions with manifests in a local lake."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from pathlib import Path

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from millpond.core.registry import SourceItem, TableState
from millpond.ingest.formats import SourceFileError
from millpond.ingest.lake import MANIFEST, Lake, Manifest
from millpond.ingest.landing import land_table, table_state
from millpond.ingest.sources import inbox as inbox_module
from millpond.ingest.sources.files import FilesSource
from millpond.ingest.sources.files.config import FilesSourceConfig
from millpond.ingest.sources.files.discovery import (
    discover,
    file_format,
    table_for,
    unclaimed_files,
)
from millpond.ingest.sources.inbox import LocalInbox, sha256_of

DAY = dt.date(2024, 3, 1)
ORDERS = "id,amount,order_date\n1,10.5,2024-01-01\n2,3.25,2024-01-02\n3,7.75,2024-01-03\n"


@pytest.fixture
def source() -> FilesSourceConfig:
    return FilesSourceConfig(kind="files", path="inbox", tables=["orders", "customers"])


def land(lake: Lake, source: FilesSourceConfig, inbox: Path, run_id: str, table="orders"):
    return land_table(lake, "erp", FilesSource("erp", source, inbox), table, run_id, today=DAY)


def partition_folder(lake: Lake, run_id: str, table: str = "orders") -> Path:
    return Path(lake.root) / "raw" / "erp" / table / f"ingest_date={DAY}" / f"run={run_id}"


# --- layout and manifest -------------------------------------------------------------------


def test_lake_from_file_url_creates_its_root(tmp_path):
    lake = Lake.from_url(f"file://{tmp_path / 'a' / 'lake'}")

    assert (tmp_path / "a" / "lake").is_dir()
    assert lake.manifests("erp", "orders") == []


def test_lake_from_unknown_url_is_rejected():
    with pytest.raises(ValueError, match="unsupported lake url"):
        Lake.from_url("ftp://host/lake")


def test_a_file_lands_as_one_partition_with_parquet_and_manifest(lake, source, inbox):
    csv_file = inbox / "orders_2024-01-31.csv"
    csv_file.write_text(ORDERS)

    result = land(lake, source, inbox, "r1")

    folder = partition_folder(lake, "r1")
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, "part-00000.parquet"]
    data = json.loads((folder / MANIFEST).read_text())
    assert data["partition_id"] == f"erp/orders/ingest_date={DAY}/run=r1"
    assert data["rows"] == 3
    assert data["bytes"] == (folder / "part-00000.parquet").stat().st_size
    assert data["files"] == [
        {
            "name": "orders_2024-01-31.csv",
            "sha256": hashlib.sha256(csv_file.read_bytes()).hexdigest(),
            "bytes": csv_file.stat().st_size,
            "rows": 3,
        }
    ]
    assert [c["name"] for c in data["schema"]] == ["id", "amount", "order_date"]
    assert data["schema"][0]["type"] == "int64"
    assert result.rows == 3
    assert result.manifest is not None and result.manifest.partition_id == data["partition_id"]


def test_landed_parquet_holds_the_file_rows(lake, source, inbox):
    (inbox / "orders.csv").write_text(ORDERS)

    land(lake, source, inbox, "r1")

    table = pq.read_table(partition_folder(lake, "r1") / "part-00000.parquet")
    assert table.column("id").to_pylist() == [1, 2, 3]
    assert table.column("order_date").to_pylist()[0] == dt.date(2024, 1, 1)


def test_manifests_read_back_what_was_landed(lake, source, inbox):
    (inbox / "orders.csv").write_text(ORDERS)
    landed = land(lake, source, inbox, "r1").manifest

    (found,) = lake.manifests("erp", "orders")

    assert found == landed
    assert Manifest.from_json(found.to_json()) == found
    assert lake.part_paths(found) == [str(partition_folder(lake, "r1") / "part-00000.parquet")]


def test_several_new_files_land_together_as_parts_of_one_partition(lake, source, inbox):
    (inbox / "orders_2024-01-01.csv").write_text(ORDERS)
    (inbox / "orders_2024-01-02.csv").write_text("id,amount,order_date\n4,1.5,2024-01-04\n")

    result = land(lake, source, inbox, "r1")

    assert result.manifest is not None
    assert [p.name for p in result.manifest.parts] == ["part-00000.parquet", "part-00001.parquet"]
    assert [f.rows for f in result.manifest.files] == [3, 1]
    assert result.rows == 4


def test_a_new_file_with_a_new_column_waits_for_the_next_run_of_its_own(lake, source, inbox):
    # A partition holds files of one schema: the file with the new column lands next run.
    (inbox / "orders_2024-01-01.csv").write_text(ORDERS)
    (inbox / "orders_2024-01-02.csv").write_text(
        "id,amount,order_date,note\n4,1.5,2024-01-04,late\n"
    )

    first = land(lake, source, inbox, "r1")
    second = land(lake, source, inbox, "r2")

    assert first.deferred == ["orders_2024-01-02.csv"] and first.rejected == []
    assert [f.name for f in first.manifest.files] == ["orders_2024-01-01.csv"]
    assert [f.name for f in second.manifest.files] == ["orders_2024-01-02.csv"]
    assert [c["name"] for c in second.manifest.schema][-1] == "note"


def test_an_xlsx_file_lands_like_a_csv(lake, source, inbox):
    workbook = openpyxl.Workbook()
    workbook.active.append(["id", "name"])
    workbook.active.append([1, "alice"])
    workbook.save(inbox / "customers.xlsx")

    result = land(lake, source, inbox, "r1", table="customers")

    assert result.rows == 1
    assert result.manifest is not None and result.manifest.files[0].name == "customers.xlsx"


# --- idempotence ---------------------------------------------------------------------------


def test_landing_again_in_a_new_run_lands_nothing(lake, source, inbox):
    (inbox / "orders.csv").write_text(ORDERS)
    land(lake, source, inbox, "r1")

    again = land(lake, source, inbox, "r2")

    assert again.manifest is None
    assert again.skipped == ["orders.csv"]
    assert again.rows == 0
    assert not partition_folder(lake, "r2").exists()
    assert len(lake.manifests("erp", "orders")) == 1


def test_a_renamed_copy_of_a_landed_file_is_not_landed_again(lake, source, inbox):
    (inbox / "orders_2024-01-01.csv").write_text(ORDERS)
    land(lake, source, inbox, "r1")
    os.rename(inbox / "orders_2024-01-01.csv", inbox / "orders_2024-01-01-resent.csv")

    again = land(lake, source, inbox, "r2")

    assert again.manifest is None
    assert again.skipped == ["orders_2024-01-01-resent.csv"]


def test_a_new_file_lands_alone_in_the_next_run(lake, source, inbox):
    (inbox / "orders_2024-01-01.csv").write_text(ORDERS)
    land(lake, source, inbox, "r1")
    (inbox / "orders_2024-01-02.csv").write_text("id,amount,order_date\n4,1.5,2024-01-04\n")

    second = land(lake, source, inbox, "r2")

    assert second.manifest is not None
    assert [f.name for f in second.manifest.files] == ["orders_2024-01-02.csv"]
    assert second.rows == 1
    assert second.skipped == ["orders_2024-01-01.csv"]
    assert [m.run_id for m in lake.manifests("erp", "orders")] == ["r1", "r2"]


def test_a_retry_of_the_same_run_returns_the_same_partition(lake, source, inbox):
    (inbox / "orders.csv").write_text(ORDERS)
    first = land(lake, source, inbox, "r1")
    (inbox / "orders_2024-02-01.csv").write_text("id,amount,order_date\n9,1.0,2024-02-01\n")

    retry = land(lake, source, inbox, "r1")

    assert retry.manifest == first.manifest
    assert len(lake.manifests("erp", "orders")) == 1
    assert sorted(p.name for p in partition_folder(lake, "r1").iterdir()) == [
        MANIFEST,
        "part-00000.parquet",
    ]


def test_an_interrupted_landing_is_ignored_and_replaced_on_retry(lake, source, inbox):
    (inbox / "orders.csv").write_text(ORDERS)
    leftovers = partition_folder(lake, "r1")
    leftovers.mkdir(parents=True)
    (leftovers / "part-00000.parquet").write_bytes(b"half a parquet file")
    (leftovers / "part-00007.parquet").write_bytes(b"stale")

    assert lake.manifests("erp", "orders") == []

    result = land(lake, source, inbox, "r1")

    assert result.rows == 3
    assert sorted(p.name for p in leftovers.iterdir()) == [MANIFEST, "part-00000.parquet"]
    assert pq.read_table(leftovers / "part-00000.parquet").num_rows == 3


def test_a_malformed_file_fails_and_leaves_no_partition(lake, source, inbox):
    bad = inbox / "orders.csv"
    bad.write_text("id,amount\n1,2\n3,4,5\n")

    result = land(lake, source, inbox, "r1")

    (rejection,) = result.rejected
    assert rejection.file == "orders.csv"
    assert rejection.reason.startswith("orders.csv, line 3: ")
    assert result.manifest is None
    assert lake.manifests("erp", "orders") == []
    assert not partition_folder(lake, "r1").exists()


def test_a_corrected_file_lands_after_a_failed_attempt(lake, source, inbox):
    bad = inbox / "orders.csv"
    bad.write_text("id,amount\n1,2\n3,4,5\n")
    assert land(lake, source, inbox, "r1").rejected
    bad.write_text("id,amount\n1,2\n3,4\n")

    retry = land(lake, source, inbox, "r1")

    assert retry.rows == 2
    assert len(lake.manifests("erp", "orders")) == 1


def test_an_empty_inbox_lands_nothing(lake, source, inbox):
    result = land(lake, source, inbox, "r1")

    assert result.manifest is None
    assert result.skipped == []


# --- which files feed which table ------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_name", "table"),
    [
        ("orders.csv", "orders"),
        ("orders_2024-01-31.csv", "orders"),
        ("orders-20240131.csv", "orders"),
        ("ORDERS_2024-01-31.CSV", "orders"),
        ("order_items_2024-01-31.xlsx", "order_items"),
        ("order_items.csv", "order_items"),
        ("orders.2024.csv", "orders"),
        ("sales_2023.csv", "sales_2023"),
        ("sales_2023_2024-01-31.csv", "sales_2023"),
        ("sales_2024-01-31.csv", "sales"),
        ("ordersx.csv", None),
        ("orders_final.csv", None),
    ],
)
def test_table_for_matches_declared_tables_with_date_suffixes(file_name, table):
    tables = ["orders", "order_items", "sales", "sales_2023"]
    assert table_for(file_name, tables) == table


def test_discover_picks_the_table_files_in_name_order(source, inbox):
    for name in [
        "orders_2024-01-02.csv",
        "orders_2024-01-01.csv",
        "orders.xlsx",
        "customers.csv",
        ".orders_hidden.csv",
        "~$orders.xlsx",
        "orders.txt",
    ]:
        (inbox / name).write_text("id\n1\n")

    found = [p.name for p in discover(inbox, source, "orders")]

    assert found == [
        "orders.txt",
        "orders.xlsx",
        "orders_2024-01-01.csv",
        "orders_2024-01-02.csv",
    ]


def test_discover_uses_the_configured_pattern(inbox):
    source = FilesSourceConfig(
        kind="files", path="inbox", tables={"orders": {"pattern": "ORD_*.dat"}}
    )
    (inbox / "ORD_1.dat").write_text("id\n1\n")
    (inbox / "orders.csv").write_text("id\n1\n")

    assert [p.name for p in discover(inbox, source, "orders")] == ["ORD_1.dat"]


def test_discover_in_a_missing_inbox_finds_nothing(tmp_path, source):
    assert discover(tmp_path / "nope", source, "orders") == []


def test_unclaimed_files_are_reported(source, inbox):
    for name in ["orders.csv", "customers_2024-01-01.csv", "invoices.csv", "notes.txt", ".keep"]:
        (inbox / name).write_text("id\n1\n")

    assert [p.name for p in unclaimed_files(inbox, source)] == ["invoices.csv", "notes.txt"]


def test_unclaimed_files_ignore_excel_lock_files(source, inbox):
    (inbox / "orders.xlsx").write_text("x")
    (inbox / "~$orders.xlsx").write_text("lock")

    assert unclaimed_files(inbox, source) == []


def test_a_missing_inbox_folder_fails_the_extract_naming_the_key(lake, tmp_path, source):
    with pytest.raises(SourceFileError, match=r"inbox folder does not exist \(sources.erp.path\)"):
        land(lake, source, tmp_path / "no-such-inbox", "r1")


def test_files_still_arriving_wait_for_a_later_run(lake, inbox):
    source = FilesSourceConfig(kind="files", path="inbox", tables=["orders"], settle_seconds=60)
    (inbox / "orders.csv").write_text(ORDERS)

    assert land(lake, source, inbox, "r1").manifest is None

    old = time.time() - 120
    os.utime(inbox / "orders.csv", (old, old))
    assert land(lake, source, inbox, "r2").rows == 3


def test_a_landing_that_died_in_another_run_is_cleaned_up_by_the_next(lake, inbox):
    orphan = Path(lake.partition_dir("erp", "orders", DAY.isoformat(), "dead-run"))
    orphan.mkdir(parents=True)
    (orphan / "part-00000.parquet").write_bytes(b"half written")
    (inbox / "orders.csv").write_text(ORDERS)

    result = land(
        lake, FilesSourceConfig(kind="files", path="inbox", tables=["orders"]), inbox, "r2"
    )

    assert result.rows == 3
    assert not orphan.exists()


# --- the files source kind ---------------------------------------------------------------------


def test_files_source_warns_about_files_no_table_claims(source, inbox):
    (inbox / "orders.csv").write_text(ORDERS)
    (inbox / "invoices.csv").write_text("id\n1\n")

    warnings = FilesSource("erp", source, inbox).warnings()

    assert warnings == ["erp: invoices.csv matches no table of the source; not landed"]


def test_files_source_offers_each_file_with_its_content_hash(source, inbox):
    csv_file = inbox / "orders.csv"
    csv_file.write_text(ORDERS)

    (item,) = FilesSource("erp", source, inbox).items("orders")

    assert item.name == "orders.csv"
    assert item.fingerprint == hashlib.sha256(ORDERS.encode()).hexdigest() == sha256_of(csv_file)
    assert item.size == csv_file.stat().st_size
    schema, batches = item.read()
    assert schema.names == ["id", "amount", "order_date"]
    assert sum(b.num_rows for b in batches) == 3


def test_a_local_file_is_hashed_once_until_its_bytes_change(tmp_path, monkeypatch):
    folder = tmp_path / "inbox"
    folder.mkdir()
    export = folder / "orders.csv"
    export.write_text(ORDERS)
    state = tmp_path / "state" / "erp.json"
    reads: list[Path] = []
    real_sha = inbox_module.sha256_of
    monkeypatch.setattr(inbox_module, "sha256_of", lambda p: reads.append(p) or real_sha(p))

    first = LocalInbox(folder, state).fingerprint(export)
    again = LocalInbox(folder, state).fingerprint(export)  # the next run: from the state file
    assert first == again == hashlib.sha256(ORDERS.encode()).hexdigest()
    assert reads == [export]

    stat = export.stat()
    export.write_text(ORDERS.replace("10.5", "99.9"))  # same size, mtime set back
    os.utime(export, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = LocalInbox(folder, state).fingerprint(export)
    assert changed == hashlib.sha256(export.read_bytes()).hexdigest() != first
    assert len(reads) == 2


def test_file_format_comes_from_the_extension_unless_configured(tmp_path):
    assert file_format(tmp_path / "a.CSV", "auto") == "csv"
    assert file_format(tmp_path / "a.xlsx", "auto") == "xlsx"
    assert file_format(tmp_path / "a.dat", "csv") == "csv"
    with pytest.raises(SourceFileError, match=r"unknown file type '\.dat'"):
        file_format(tmp_path / "a.dat", "auto")


def test_a_file_matched_by_pattern_with_an_unknown_extension_fails_naming_it(lake, inbox):
    source = FilesSourceConfig(kind="files", path="inbox", tables={"orders": {"pattern": "*.dat"}})
    (inbox / "ORD_1.dat").write_text(ORDERS)

    with pytest.raises(SourceFileError, match=r"ORD_1\.dat.*unknown file type"):
        land(lake, source, inbox, "r1")


class MemorySource:
    """A source of another kind: in-memory tables, fingerprinted by a cursor value."""

    def __init__(self, batches: dict[str, pa.Table]) -> None:
        self.batches = batches

    def items(self, table: str, state: TableState) -> list[SourceItem]:
        return [
            SourceItem(
                name=f"{table}@{key}",
                fingerprint=key,
                size=data.nbytes,
                read=lambda data=data: (data.schema, iter(data.to_batches())),
            )
            for key, data in self.batches.items()
        ]

    def warnings(self) -> list[str]:
        return []


def test_landing_works_for_any_source_and_skips_known_fingerprints(lake):
    source = MemorySource({"cursor-1": pa.table({"id": [1, 2]})})
    first = land_table(lake, "api", source, "events", "r1", today=DAY)
    source.batches["cursor-2"] = pa.table({"id": [3]})

    second = land_table(lake, "api", source, "events", "r2", today=DAY)

    assert first.rows == 2
    assert second.rows == 1
    assert second.skipped == ["events@cursor-1"]
    assert second.manifest is not None
    assert [f.sha256 for f in second.manifest.files] == ["cursor-2"]
    assert [m.run_id for m in lake.manifests("api", "events")] == ["r1", "r2"]


class IncrementalSource:
    """An incremental source: rows with an increasing `id`, read from the cursor on."""

    def __init__(self, rows: list[int]) -> None:
        self.rows = rows
        self.seen: list[object] = []

    def items(self, table: str, state: TableState) -> list[SourceItem]:
        self.seen.append(state.cursor)
        new = [r for r in self.rows if state.cursor is None or r > state.cursor]
        data = pa.table({"id": pa.array(new, pa.int64())})
        return [
            SourceItem(
                name=f"{table} after {state.cursor}",
                fingerprint=f"{table}:{state.cursor}",
                size=0,
                read=lambda: (data.schema, iter(data.to_batches())),
                cursor=lambda: max(new, default=state.cursor),
                land_if_empty=False,
            )
        ]

    def warnings(self) -> list[str]:
        return []


def test_an_incremental_cursor_is_committed_with_its_partition_and_read_back(lake):
    source = IncrementalSource([1, 2, 3])
    first = land_table(lake, "db", source, "events", "r1", today=DAY)
    source.rows += [4, 5]
    second = land_table(lake, "db", source, "events", "r2", today=DAY)

    assert source.seen == [None, 3]
    assert (first.rows, first.manifest.cursor) == (3, 3)
    assert (second.rows, second.manifest.cursor) == (2, 5)
    assert table_state(lake.manifests("db", "events")) == TableState(cursor=5)


def test_an_incremental_read_with_nothing_new_lands_nothing(lake):
    source = IncrementalSource([1, 2])
    land_table(lake, "db", source, "events", "r1", today=DAY)

    again = land_table(lake, "db", source, "events", "r2", today=DAY)

    assert again.manifest is None
    assert [m.run_id for m in lake.manifests("db", "events")] == ["r1"]
    assert lake.remove_orphans("db", "events") == 0  # no empty folder left behind


@pytest.mark.parametrize("column", ["_partition_id", "_loaded_at", "_millpond_file"])
def test_a_column_named_like_millpond_bookkeeping_is_refused_naming_it(lake, column):
    source = MemorySource({"k1": pa.table({"id": [1], column: ["x"]})})

    result = land_table(lake, "api", source, "events", "r1", today=DAY)

    assert f"column {column} is reserved" in result.rejected[0].reason
    assert lake.manifests("api", "events") == []


def test_extracts_running_at_once_copy_in_turns_each_with_every_thread(lake, monkeypatch):
    """A copy's threads are fixed when it starts: split among four copies at once, the big
    file kept one thread long after the small ones were done. So copies take turns."""
    from concurrent.futures import ThreadPoolExecutor

    from millpond.ingest.formats import FileRead
    from millpond.ingest.parts import write_part

    monkeypatch.setenv("MILLPOND_LANDING_THREADS", "3")
    running, seen = [], []

    def copy_to(target: str, extra: list[str], threads: int) -> int:
        running.append(target)
        seen.append((len(running), threads))
        time.sleep(0.05)
        running.remove(target)
        return 1

    def part(i: int) -> int:
        file = FileRead(f"f{i}.csv", pa.schema([]), lambda: iter([]), copy_to=copy_to)
        return write_part(lake, str(Path(lake.root) / f"p{i}.parquet"), file, {})

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(part, range(4))) == [1, 1, 1, 1]
    assert seen == [(1, 3)] * 4
