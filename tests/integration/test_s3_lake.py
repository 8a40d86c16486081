"""The lake on S3 and an S3 inbox, against a real S3 server over HTTP (moto in server mode):
the same layout and code as the local lake; parts invisible until their manifest."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import S3_KEY_ID, S3_SECRET, s3_client

from millpond.core.config import S3Connection
from millpond.core.registry import SourceItem
from millpond.ingest.lake import MANIFEST, Lake
from millpond.ingest.landing import land_table
from millpond.ingest.sources.files import FilesSource
from millpond.ingest.sources.files.config import FilesSourceConfig
from millpond.ingest.sources.inbox import S3Inbox

DAY = dt.date(2024, 3, 1)
ORDERS = "id,amount\n1,10.5\n2,3.25\n3,7.75\n"


def keys(endpoint: str, bucket: str) -> list[str]:
    listed = s3_client(endpoint).list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(o["Key"] for o in listed)


def local_source(tmp_path: Path, text: str = ORDERS) -> FilesSource:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    (inbox / "orders.csv").write_text(text)
    config = FilesSourceConfig(kind="files", path=str(inbox), tables=["orders"])
    return FilesSource("erp", config, inbox)


def test_a_partition_round_trips_through_an_s3_lake(s3_server, s3_bucket, s3_lake, tmp_path):
    result = land_table(s3_lake, "erp", local_source(tmp_path), "orders", "r1", today=DAY)

    prefix = f"lake/raw/erp/orders/ingest_date={DAY}/run=r1"
    assert [k for k in keys(s3_server, s3_bucket) if not k.endswith("/")] == [
        f"{prefix}/{MANIFEST}",
        f"{prefix}/part-00000.parquet",
    ]
    (manifest,) = s3_lake.manifests("erp", "orders")
    assert manifest == result.manifest
    assert manifest.rows == 3 and manifest.files[0].name == "orders.csv"
    table = pq.read_table(s3_lake.part_paths(manifest)[0], filesystem=s3_lake.fs)
    assert table.column("amount").to_pylist() == [10.5, 3.25, 7.75]
    # The same file again lands nothing: its content hash is in a manifest on S3.
    again = land_table(s3_lake, "erp", local_source(tmp_path), "orders", "r2", today=DAY)
    assert again.manifest is None and again.skipped == ["orders.csv"]


def test_an_s3_lake_removes_orphans_and_its_manifest_is_whole(s3_server, s3_bucket, s3_lake):
    client = s3_client(s3_server)
    orphan = f"lake/raw/erp/orders/ingest_date={DAY}/run=dead/part-00000.parquet"
    client.put_object(Bucket=s3_bucket, Key=orphan, Body=b"half written")

    assert s3_lake.manifests("erp", "orders") == []  # no manifest: no partition
    assert s3_lake.remove_orphans("erp", "orders") == 1
    assert orphan not in keys(s3_server, s3_bucket)

    path = s3_lake.path("raw", "erp", "orders", "x.json")
    s3_lake.write_text_atomic(path, "first")
    s3_lake.write_text_atomic(path, "second")
    assert s3_lake.read_text(path) == "second"
    assert not [k for k in keys(s3_server, s3_bucket) if k.endswith(".tmp")]


def test_lake_from_config_reads_credentials_from_the_environment(s3_server, s3_bucket, tmp_path):
    from millpond.core.config_loading import load_config

    (tmp_path / "millpond.yml").write_text(
        f"lake:\n  url: s3://{s3_bucket}/lake\n  endpoint_url: ${{S3_ENDPOINT}}\n"
        "  access_key_id: ${S3_KEY_ID}\n  secret_access_key: ${S3_SECRET}\n"
        "sources: {}\n"
    )
    env = {"S3_ENDPOINT": s3_server, "S3_KEY_ID": S3_KEY_ID, "S3_SECRET": S3_SECRET}
    config = load_config(tmp_path / "millpond.yml", env)
    lake = Lake.from_config(config)

    assert lake.is_s3 and lake.uri(lake.path("raw")) == f"s3://{s3_bucket}/lake/raw"
    assert S3_SECRET in config.secrets()  # masked in logs like any password
    land_table(lake, "erp", local_source(tmp_path), "orders", "r1", today=DAY)
    assert len(lake.manifests("erp", "orders")) == 1


# --- a failed landing leaves nothing readable -----------------------------------------------


def _failing_item(rows_before_failure: int) -> SourceItem:
    schema = pa.schema([("id", pa.int64())])

    def batches() -> Iterator[pa.RecordBatch]:
        yield pa.record_batch([pa.array(range(rows_before_failure))], schema=schema)
        raise ValueError("row 122881: not a number")

    return SourceItem(name="big.csv", fingerprint="f1", size=1, read=lambda: (schema, batches()))


class _Offers:
    def __init__(self, items: list[SourceItem]) -> None:
        self._items = items

    def items(self, table, state=None):
        return self._items

    def warnings(self):
        return []


def _good_item() -> SourceItem:
    schema = pa.schema([("id", pa.int64())])
    batch = pa.record_batch([pa.array([1, 2])], schema=schema)
    return SourceItem(name="good.csv", fingerprint="g1", size=1, read=lambda: (schema, [batch]))


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_landing_that_fails_midway_leaves_no_parquet_file(
    where, lake, s3_lake, s3_server, s3_bucket
):
    target = lake if where == "local" else s3_lake
    # The first file is complete, the second fails after 122,880 rows were written.
    source = _Offers([_good_item(), _failing_item(122_880)])

    with pytest.raises(ValueError, match="row 122881"):
        land_table(target, "erp", source, "orders", "r1", today=DAY)

    if where == "local":
        left = [str(p) for p in Path(lake.root).rglob("*") if p.is_file()]
        assert left == []
        glob = str(Path(lake.root) / "**" / "*.parquet")
        assert duckdb.sql(f"select count(*) from glob('{glob}')").fetchone() == (0,)
    else:
        assert [k for k in keys(s3_server, s3_bucket) if not k.endswith("/")] == []
    assert target.manifests("erp", "orders") == []


def test_parts_are_hidden_until_the_partition_is_complete(lake):
    """While a part is being written, the folder holds no *.parquet file (globbing readers
    see nothing), and the part gets its name only with the manifest."""
    seen: list[list[str]] = []
    folder = Path(lake.partition_dir("erp", "orders", DAY.isoformat(), "r1"))
    schema = pa.schema([("id", pa.int64())])

    def batches() -> Iterator[pa.RecordBatch]:
        yield pa.record_batch([pa.array([1])], schema=schema)
        seen.append(sorted(p.name for p in folder.iterdir()))
        yield pa.record_batch([pa.array([2])], schema=schema)

    item = SourceItem(name="a.csv", fingerprint="a", size=1, read=lambda: (schema, batches()))
    land_table(lake, "erp", _Offers([_good_item(), item]), "orders", "r1", today=DAY)

    assert seen == [[".part-00000.parquet.tmp", ".part-00001.parquet.tmp"]]
    assert sorted(p.name for p in folder.iterdir()) == [
        MANIFEST,
        "part-00000.parquet",
        "part-00001.parquet",
    ]


# --- an S3 inbox ----------------------------------------------------------------------------


@pytest.fixture
def drop_zone(s3_server: str, s3_bucket: str) -> str:
    return f"s3://{s3_bucket}/exports/"


def s3_files_source(s3_server: str, url: str, state: Path) -> FilesSource:
    conn = S3Connection(
        endpoint_url=s3_server, access_key_id=S3_KEY_ID, secret_access_key=S3_SECRET
    )
    config = FilesSourceConfig(kind="files", path=url, tables=["orders"], s3=conn)
    return FilesSource("erp", config, S3Inbox(url, conn, state / "erp.json"))


def test_an_s3_export_lands_once_and_a_changed_one_again(
    s3_server, s3_bucket, drop_zone, lake, tmp_path
):
    client = s3_client(s3_server)
    client.put_object(Bucket=s3_bucket, Key="exports/orders.csv", Body=ORDERS.encode())
    client.put_object(Bucket=s3_bucket, Key="exports/archive/orders_2023-01-01.csv", Body=b"x")

    first = land_table(
        lake, "erp", s3_files_source(s3_server, drop_zone, tmp_path), "orders", "r1", today=DAY
    )
    assert first.manifest is not None and first.manifest.rows == 3
    assert first.manifest.files[0].sha256 == hashlib.sha256(ORDERS.encode()).hexdigest()

    time.sleep(1.1)  # a new LastModified second: the re-upload is a new object version
    client.put_object(Bucket=s3_bucket, Key="exports/orders.csv", Body=ORDERS.encode())
    same = land_table(
        lake, "erp", s3_files_source(s3_server, drop_zone, tmp_path), "orders", "r2", today=DAY
    )
    assert same.manifest is None and same.skipped == ["orders.csv"]

    changed = ORDERS + "4,1.0\n"
    client.put_object(Bucket=s3_bucket, Key="exports/orders.csv", Body=changed.encode())
    again = land_table(
        lake, "erp", s3_files_source(s3_server, drop_zone, tmp_path), "orders", "r3", today=DAY
    )
    assert again.manifest is not None and again.manifest.rows == 4
    assert len(lake.manifests("erp", "orders")) == 2
    # Hashes are remembered by key, size and mtime: the temporary downloads are gone.
    remembered = json.loads((tmp_path / "erp.json").read_text())
    assert sorted(remembered.values()) == sorted(
        hashlib.sha256(t.encode()).hexdigest() for t in (ORDERS, ORDERS, changed)
    )


def test_an_unchanged_s3_export_is_not_downloaded_again(s3_server, s3_bucket, drop_zone, tmp_path):
    client = s3_client(s3_server)
    client.put_object(Bucket=s3_bucket, Key="exports/orders.csv", Body=ORDERS.encode())
    source = s3_files_source(s3_server, drop_zone, tmp_path)
    (item,) = source.items("orders")
    digest = item.fingerprint

    # Same key, size and mtime: the remembered hash, no download (the object is gone from
    # the server by the time it is asked, so a download would fail).
    (remote,) = source.inbox.files()
    client.delete_object(Bucket=s3_bucket, Key="exports/orders.csv")
    fresh = s3_files_source(s3_server, drop_zone, tmp_path).inbox
    assert fresh.fingerprint(remote) == digest


def test_a_missing_s3_inbox_fails_naming_it(s3_server, s3_bucket, lake, tmp_path):
    from millpond.ingest.formats import SourceFileError

    url = f"s3://{s3_bucket}/nothing-here/"
    with pytest.raises(SourceFileError, match="nothing-here"):
        land_table(lake, "erp", s3_files_source(s3_server, url, tmp_path), "orders", "r1")


def test_an_endpoint_without_a_scheme_is_a_config_error_naming_the_key(tmp_path):
    from millpond.core.config import ConfigError
    from millpond.core.config_loading import load_config

    (tmp_path / "millpond.yml").write_text(
        "lake:\n  url: s3://b/lake\n  endpoint_url: minio:9000\nsources: {}\n"
    )
    with pytest.raises(ConfigError, match=r"lake.endpoint_url.*http://"):
        load_config(tmp_path / "millpond.yml", {})
