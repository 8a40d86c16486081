"""The lake: immutable raw partitions with manifests, on a local folder or S3/MinIO.

All I/O goes through one `pyarrow.fs.FileSystem`, so the local lake and an S3/MinIO lake are
the same code. The layout is

    raw/<source>/<table>/ingest_date=YYYY-MM-DD/run=<run_id>/part-00000.parquet
    raw/<source>/<table>/ingest_date=YYYY-MM-DD/run=<run_id>/_manifest.json

The manifest is written last: a partition folder without one is an interrupted landing that
never happened, and every reader here ignores it. Parts are written under a hidden, temporary
name first (ingest.staging), so not even a reader that globs the lake sees a half-landed part.
A manifest that exists but cannot be read (truncated or edited by hand) is damage, not absence:
`manifests` raises ManifestDamaged naming the file, `scan` lists it for the commands that show
and repair damage (`millpond lake ls|drop`, `millpond doctor`; docs/recovery.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow.fs as pafs

from millpond.core.config import MillpondConfig, S3Connection
from millpond.ingest import s3

MANIFEST = "_manifest.json"


@dataclass(frozen=True)
class SourceFile:
    """One export file that went into a partition."""

    name: str
    sha256: str
    bytes: int
    rows: int
    # Rows of the file kept out of the part (on_bad_rows: quarantine), in the lake's
    # quarantine/ folder.
    bad_rows: int = 0


@dataclass(frozen=True)
class PartFile:
    """One Parquet file of a partition, relative to the partition folder."""

    name: str
    rows: int
    bytes: int


@dataclass(frozen=True)
class Manifest:
    """What a partition holds; its presence is what makes the partition exist."""

    partition_id: str
    source: str
    table: str
    run_id: str
    ingest_date: str
    landed_at: str
    rows: int
    bytes: int
    schema: list[dict[str, str]]
    files: list[SourceFile] = field(default_factory=list)
    parts: list[PartFile] = field(default_factory=list)
    # An incremental table's cursor once this partition is landed (JSON value), else None.
    cursor: Any = None
    # A whole snapshot: replaces the table's older partitions in the raw relation.
    replaces: bool = False
    # Each key once (latest wins by `order_by`, then landing order) in <raw>__latest.
    primary_key: list[str] = field(default_factory=list)
    order_by: str | None = None
    # Column types the table declared (`types:`) when this partition landed: loaders let a
    # declared text column take over a numeric one.
    declared_types: dict[str, str] = field(default_factory=dict)
    # Files of bad rows kept out of this partition, relative to the lake root.
    quarantine: list[str] = field(default_factory=list)
    # Hashes of the records landed at the cursor value (an incremental source's
    # ReadReport.boundary): an inclusive API sends them again and they are not landed twice.
    boundary: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        data = asdict(self)
        # Fields added later are written only when set, so an older manifest read back
        # serialises (and hashes) exactly as it was written.
        for key in ("declared_types", "quarantine", "boundary"):
            if not data[key]:
                del data[key]
        for source_file in data["files"]:
            if not source_file["bad_rows"]:
                del source_file["bad_rows"]
        return json.dumps(data, indent=2, sort_keys=True)

    @property
    def sha256(self) -> str:
        """Content hash of the manifest, recorded in the ledger to detect tampering."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data: dict[str, Any] = json.loads(text)
        data["files"] = [SourceFile(**f) for f in data.get("files", [])]
        data["parts"] = [PartFile(**p) for p in data.get("parts", [])]
        return cls(**data)


class ManifestDamaged(ValueError):
    """A `_manifest.json` that cannot be read (truncated, edited by hand): named by file, with
    the ways out. Not retryable: the same file fails the same way."""

    retryable = False

    def __init__(self, path: str, partition_id: str, reason: str) -> None:
        super().__init__(
            f"the manifest {path} of partition {partition_id} cannot be read ({reason}): "
            "`millpond doctor --repair` sets the partition aside (the next run lands its files "
            f"again if the source still has them), or `millpond lake drop {partition_id}` "
            "deletes it"
        )
        self.path = path
        self.partition_id = partition_id
        self.reason = reason


@dataclass(frozen=True)
class DamagedPartition:
    """A partition folder whose manifest cannot be read (`Lake.scan`)."""

    partition_id: str
    folder: str
    manifest: str  # the manifest's path or URL, as messages name it
    reason: str


def raw_table_name(source: str, table: str) -> str:
    """The warehouse relation of a lake table in every target: raw.<source>__<table>."""
    return f"{source}__{table}"


class Lake:
    """A root folder on some filesystem, with the partition layout on top."""

    def __init__(self, fs: pafs.FileSystem, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        # How to reach the server when the lake is on S3 (None for a local folder).
        self.connection: S3Connection | None = None
        self.url = root

    @classmethod
    def from_url(
        cls,
        url: str,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> Lake:
        """A lake from `file:///abs/path` or `s3://bucket/prefix` (MinIO via endpoint_url).
        An S3 lake asks its server for the bucket once: an address, credentials or bucket
        that cannot work is an `s3.S3Error` naming the `lake.*` key to change."""
        if url.startswith("file://"):
            root = url.removeprefix("file://")
            fs = pafs.LocalFileSystem()
            fs.create_dir(root, recursive=True)
            return cls(fs, root)
        if url.startswith("s3://"):
            conn = S3Connection(
                endpoint_url=endpoint_url,
                region=region,
                access_key_id=access_key_id,
                secret_access_key=secret_access_key,
            )
            s3.check_url(url)
            lake = cls(s3.filesystem(conn), url.removeprefix("s3://"))
            lake.connection, lake.url = conn, url
            s3.check_bucket(lake.fs, conn, url)
            return lake
        raise ValueError(f"unsupported lake url {url!r}")

    @classmethod
    def from_config(cls, config: MillpondConfig) -> Lake:
        """The lake of a stack's config."""
        lake = config.lake
        return cls.from_url(
            config.lake_url,
            lake.endpoint_url,
            lake.region,
            lake.access_key_id,
            lake.secret_access_key,
        )

    @property
    def is_s3(self) -> bool:
        return self.connection is not None

    def uri(self, path: str) -> str:
        """A lake path as DuckDB reads it: `s3://bucket/key` on S3, the local path otherwise."""
        return f"s3://{path}" if self.is_s3 else path

    def path(self, *parts: str) -> str:
        return str(PurePosixPath(self.root, *parts))

    def table_dir(self, source: str, table: str) -> str:
        return self.path("raw", source, table)

    def partition_dir(self, source: str, table: str, ingest_date: str, run_id: str) -> str:
        return self.path("raw", source, table, f"ingest_date={ingest_date}", f"run={run_id}")

    def partition_id(self, source: str, table: str, ingest_date: str, run_id: str) -> str:
        return f"{source}/{table}/ingest_date={ingest_date}/run={run_id}"

    def local_path(self, path: str) -> Path | None:
        """The path on local disk when the lake is a local folder (None for S3), so DuckDB can
        read and write lake files directly."""
        return Path(path) if isinstance(self.fs, pafs.LocalFileSystem) else None

    @contextlib.contextmanager
    def _explained(self) -> Iterator[None]:
        """pyarrow's S3 errors (a server gone, credentials revoked) as messages naming the
        `lake.*` key; local errors unchanged."""
        try:
            yield
        except s3.S3Error:
            raise
        except OSError as exc:
            if self.connection is None or "AWS Error" not in str(exc):
                raise
            raise s3.S3Error(
                s3.explain(exc, self.connection, self.url), s3.unreachable(exc)
            ) from exc

    def exists(self, path: str) -> bool:
        with self._explained():
            return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def read_text(self, path: str) -> str:
        with self._explained(), self.fs.open_input_stream(path) as stream:
            return stream.read().decode("utf-8")

    def write_text_atomic(self, path: str, text: str) -> None:
        """Write so readers see the whole file or none (rename locally; PUT is atomic on S3)."""
        if isinstance(self.fs, pafs.LocalFileSystem):
            tmp = f"{path}.tmp"
            with self.fs.open_output_stream(tmp) as out:
                out.write(text.encode("utf-8"))
            self.fs.move(tmp, path)
        else:
            with self._explained(), self.fs.open_output_stream(path) as out:
                out.write(text.encode("utf-8"))

    def manifests(self, source: str, table: str) -> list[Manifest]:
        """Every complete partition of a table, oldest first; ManifestDamaged (naming the
        file) when a manifest cannot be read: nothing may be decided over a partition whose
        content is unknown."""
        found, damaged = self.scan(source, table)
        if damaged:
            first = damaged[0]
            raise ManifestDamaged(first.manifest, first.partition_id, first.reason)
        return found

    def scan(self, source: str, table: str) -> tuple[list[Manifest], list[DamagedPartition]]:
        """The table's readable partitions (oldest first) and the damaged ones, for the
        commands that show or repair damage (`millpond lake ls`, `lake drop`, doctor)."""
        base = self.table_dir(source, table)
        if not self.exists(base):
            return [], []
        selector = pafs.FileSelector(base, recursive=True)
        found: list[Manifest] = []
        damaged: list[DamagedPartition] = []
        for info in self.fs.get_file_info(selector):
            if info.type != pafs.FileType.File or info.base_name != MANIFEST:
                continue
            try:
                found.append(Manifest.from_json(self.read_text(info.path)))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                folder = info.path.rsplit("/", 1)[0]
                damaged.append(
                    DamagedPartition(
                        self.partition_id_of(folder),
                        folder,
                        self.uri(info.path),
                        f"{type(exc).__name__}: {exc}",
                    )
                )
        found.sort(key=lambda m: (m.landed_at, m.partition_id))
        return found, sorted(damaged, key=lambda d: d.partition_id)

    def partition_id_of(self, folder: str) -> str:
        """A partition folder's id (`source/table/ingest_date=.../run=...`)."""
        return folder.removeprefix(self.path("raw") + "/").strip("/")

    def remove_orphans(self, source: str, table: str) -> int:
        """Delete partition folders without a manifest (landings that died midway); the caller
        must hold the table's extract lock so no landing in progress is mistaken for one."""
        base = self.table_dir(source, table)
        if not self.exists(base):
            return 0
        infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True))
        folders = [
            i.path
            for i in infos
            if i.type == pafs.FileType.Directory and i.base_name.startswith("run=")
        ]
        orphans = [f for f in folders if not self.exists(f"{f}/{MANIFEST}")]
        for folder in orphans:
            self.fs.delete_dir(folder)
        return len(orphans)

    def part_paths(self, manifest: Manifest) -> list[str]:
        folder = self.partition_dir(
            manifest.source, manifest.table, manifest.ingest_date, manifest.run_id
        )
        return [f"{folder}/{part.name}" for part in manifest.parts]
