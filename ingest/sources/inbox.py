"""Where a `files` source's exports come from: a local folder or an S3 prefix.

Both give the same three things to a source reading files (`ingest.sources.files`): the visible
files (name, size, mtime), each file's content hash (the fingerprint a landed file is recognised
by), and a local path for the readers (ingest.formats), which read local files only.

Hashing every file on every run would make a run with nothing new cost a read of the whole
inbox (a second or more per GB), so each file's hash is remembered in the state dir
(`<state>/inbox/<source>.json`, HashCache) under what changes whenever its bytes do:
- a local file by path, size, inode, and modification and change times in nanoseconds (the
  change time cannot be set back by `touch`, and copying or rewriting a file renews it);
- an S3 object by key, size and modification time. An object is downloaded once into a
  temporary file while it is hashed (one read of the object), and that file is what the
  reader gets; it is deleted once read. So an unchanged object is never downloaded twice; one
  re-uploaded (new mtime) is downloaded once to hash it, and if its content is the same it is
  recognised as landed and skipped like a re-sent local file.
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

from millpond.core.config import S3Connection
from millpond.ingest import s3

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
    """What a source reading files needs from a place exports are dropped into."""

    location: str

    def exists(self) -> bool: ...

    def files(self) -> list[Any]: ...

    def fingerprint(self, file: Any) -> str: ...

    def known_fingerprint(self, file: Any) -> str | None:
        """The hash if it comes without downloading the file, else None."""
        ...

    def size(self, file: Any) -> int: ...

    def mtime(self, file: Any) -> float: ...

    def read(self, file: Any, reader: Callable[[Path], Any]) -> Any: ...


class HashCache:
    """Content hashes remembered by a key that changes whenever the content does.

    The file is replaced whole (a crash leaves the old one); two processes writing at once
    (Airflow tasks of one source) can lose an entry, which costs one more hash, never a
    wrong one."""

    def __init__(self, state_file: Path | None) -> None:
        self.state_file = state_file
        self._lock = threading.Lock()
        self._known: dict[str, str] | None = None  # read once: an inbox of n files, n lookups

    def get(self, key: str) -> str | None:
        with self._lock:
            if self._known is None:
                self._known = self._read()
            return self._known.get(key)

    def put(self, key: str, digest: str) -> None:
        if self.state_file is None:
            return
        with self._lock:
            hashes = self._read()  # what another process added since is kept
            hashes[key] = digest
            _write_json(self.state_file, hashes)
            self._known = hashes

    def _read(self) -> dict[str, str]:
        if self.state_file is None:
            return {}
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


class LocalInbox:
    """A folder on this machine; files are `Path`s and readers read them in place."""

    def __init__(self, folder: Path, state_file: Path | None = None) -> None:
        self.folder = folder
        self.location = str(folder)
        self.hashes = HashCache(state_file)

    def exists(self) -> bool:
        return self.folder.is_dir()

    def files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return [p for p in self.folder.iterdir() if p.is_file() and not is_hidden(p.name)]

    def fingerprint(self, file: Path) -> str:
        st = file.stat()
        key = f"{file.resolve()}|{st.st_size}|{st.st_ino}|{st.st_mtime_ns}|{st.st_ctime_ns}"
        known = self.hashes.get(key)
        if known:
            return known
        digest = sha256_of(file)
        self.hashes.put(key, digest)
        return digest

    def known_fingerprint(self, file: Path) -> str:
        return self.fingerprint(file)  # a local read is what the run would do anyway

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
        self.hashes = HashCache(state_file)
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
        known = self.known_fingerprint(file)
        if known:
            return known
        digest = self._fetch(file)
        self.hashes.put(_key(file), digest)
        return digest

    def known_fingerprint(self, file: RemoteFile) -> str | None:
        return self.hashes.get(_key(file))

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

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __del__(self) -> None:
        self.close()


def _key(file: RemoteFile) -> str:
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
    state_file = state_dir / "inbox" / f"{name}.json"
    if path.startswith("s3://"):
        return S3Inbox(path, conn or S3Connection(), state_file)
    return LocalInbox(resolve(path), state_file)
