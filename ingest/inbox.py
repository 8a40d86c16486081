"""Where a `files` source's exports come from: a local folder or an S3 prefix.

Both give the same three things to `ingest.files`: the visible files (name, size, mtime), each
file's content hash (the fingerprint a landed file is recognised by), and a local path for the
readers (ingest.formats), which read local files only.

An S3 object is downloaded once into a temporary file while it is hashed (one read of the
object), and that file is what the reader gets; it is deleted once read. So an object already
landed is not pulled again, each object's hash is remembered by key, size and modification
time in the state dir (`<state>/inbox/<source>.json`): an unchanged object is never downloaded
twice; one re-uploaded (new mtime) is downloaded once to hash it, and if its content is the
same it is recognised as landed and skipped like a re-sent local file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import pyarrow.fs as pafs

from ingest import s3
from millpond.core.config import S3Connection

BLOCK = 1 << 20


def is_hidden(name: str) -> bool:
    """Dot files and Excel's `~$` lock files are never exports."""
    return name.startswith((".", "~$"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class RemoteFile:
    """One object under an S3 inbox prefix; `name` and `suffix` as a Path would have them."""

    key: str  # bucket/key, as pyarrow names it
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return PurePosixPath(self.key).name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.key).suffix


class Inbox(Protocol):
    """What ingest.files needs from a place exports are dropped into."""

    location: str

    def exists(self) -> bool: ...

    def files(self) -> list[Any]: ...

    def fingerprint(self, file: Any) -> str: ...

    def size(self, file: Any) -> int: ...

    def mtime(self, file: Any) -> float: ...

    def read(self, file: Any, reader: Callable[[Path], Any]) -> Any: ...


class LocalInbox:
    """A folder on this machine; files are `Path`s and readers read them in place."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.location = str(folder)

    def exists(self) -> bool:
        return self.folder.is_dir()

    def files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return [p for p in self.folder.iterdir() if p.is_file() and not is_hidden(p.name)]

    def fingerprint(self, file: Path) -> str:
        return sha256_of(file)

    def size(self, file: Path) -> int:
        return file.stat().st_size

    def mtime(self, file: Path) -> float:
        return file.stat().st_mtime

    def read(self, file: Path, reader: Callable[[Path], Any]) -> Any:
        return reader(file)


class S3Inbox:
    """The objects directly under an S3 prefix (`s3://bucket/prefix/`); sub-prefixes are not
    read, so an upstream system can keep its own `archive/` beside the drop zone."""

    def __init__(self, url: str, conn: S3Connection, state_file: Path) -> None:
        bucket, prefix = s3.split_url(url)
        self.location = url
        self.base = f"{bucket}/{prefix}".rstrip("/")
        self.fs = s3.filesystem(conn)
        self.state_file = state_file
        self._lock = threading.Lock()
        self._fetched: dict[str, Path] = {}
        self._tmp = Path(tempfile.mkdtemp(prefix="millpond-inbox-"))

    def exists(self) -> bool:
        info = self.fs.get_file_info(self.base)
        return info.type == pafs.FileType.Directory

    def files(self) -> list[RemoteFile]:
        selector = pafs.FileSelector(self.base, allow_not_found=True, recursive=False)
        return [
            RemoteFile(i.path, i.size or 0, i.mtime_ns or 0)
            for i in self.fs.get_file_info(selector)
            if i.type == pafs.FileType.File and not is_hidden(i.base_name)
        ]

    def fingerprint(self, file: RemoteFile) -> str:
        known = self._hashes().get(_cache_key(file))
        if known:
            return known
        digest = self._fetch(file)
        with self._lock:
            hashes = self._hashes()
            hashes[_cache_key(file)] = digest
            _write_json(self.state_file, hashes)
        return digest

    def size(self, file: RemoteFile) -> int:
        return file.size

    def mtime(self, file: RemoteFile) -> float:
        return file.mtime_ns / 1e9

    def read(self, file: RemoteFile, reader: Callable[[Path], Any]) -> Any:
        """The reader's (schema, batches) over a local copy, deleted once the batches are
        consumed (or the reader fails)."""
        with self._lock:
            local = self._fetched.pop(file.key, None)
        if local is None or not local.exists():
            self._fetch(file)
            with self._lock:
                local = self._fetched.pop(file.key)
        try:
            schema, batches = reader(local)
        except BaseException:
            _remove(local)
            raise
        return schema, _then_remove(batches, local)

    def _fetch(self, file: RemoteFile) -> str:
        """Download the object into a temporary file of its own name, hashing as it streams."""
        folder = Path(tempfile.mkdtemp(dir=self._tmp))
        local = folder / file.name
        digest = hashlib.sha256()
        with self.fs.open_input_stream(file.key) as stream, local.open("wb") as out:
            while block := stream.read(BLOCK):
                digest.update(block)
                out.write(block)
        with self._lock:
            self._fetched[file.key] = local
        return digest.hexdigest()

    def _hashes(self) -> dict[str, str]:
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __del__(self) -> None:
        self.close()


def _cache_key(file: RemoteFile) -> str:
    return f"{file.key}|{file.size}|{file.mtime_ns}"


def _write_json(path: Path, data: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=0, sort_keys=True)
    os.replace(tmp, path)


def _remove(local: Path) -> None:
    with contextlib.suppress(OSError):
        shutil.rmtree(local.parent)


def _then_remove(batches: Any, local: Path) -> Iterator[Any]:
    try:
        yield from batches
    finally:
        _remove(local)


def open_inbox(
    path: str, resolve: Callable[[str], Path], conn: S3Connection | None, state_dir: Path, name: str
) -> Inbox:
    """The inbox of a `files` source: `s3://...` on an S3 server, else a local folder."""
    if path.startswith("s3://"):
        return S3Inbox(path, conn or S3Connection(), state_dir / "inbox" / f"{name}.json")
    return LocalInbox(resolve(path))
