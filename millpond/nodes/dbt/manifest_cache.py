"""Reuse the last parsed dbt manifest while the project is unchanged.

Under Airflow each dbt node is its own process; asking dbt to parse the project in each (even
partially) costs seconds per task. dbt already saves its fully processed manifest
(`partial_parse.msgpack`) in the target folder; while a fingerprint of everything a parse reads
is the same as at that parse, the saved manifest is loaded as it is and dbt is not asked.

The fingerprint covers the project's files and where they are (models, macros, seeds, installed
packages; not its target or log folders), the profile, the command-line arguments (`--vars`,
target), the values of the environment variables the project reads with `env_var()` and of the
target's dbt env, and the dbt version. Only digests are stored: vars and env values may be
secrets.

Where millpond's state dir is does not change a parse (the profile names the warehouse file in
it, but a parse reads only the database name, the file's stem), so the fingerprint leaves that
location out, and a parse is also kept in a machine-wide cache (`$MILLPOND_CACHE_DIR`, else
`~/.cache/millpond`, under `dbt-parse/<fingerprint>`): another clone or state dir of the same
dbt project (a second checkout, CI, every test project) starts from it instead of parsing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

FINGERPRINT_FILE = "millpond-parse.fingerprint"
SAVED_MANIFEST = "partial_parse.msgpack"
SHARED_FILES = (SAVED_MANIFEST, "manifest.json")
SHARED_KEPT = 20  # parses kept in the machine-wide cache, most recently used first
_SKIP_DIRS = {"target", "logs", "__pycache__"}
_ENV_VAR = re.compile(rb"""env_var\(\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]""")


def _files(folder: Path, skip: Iterable[Path]) -> list[Path]:
    skipped = {p.resolve() for p in skip}
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in _SKIP_DIRS
            and not d.startswith(".")
            and (Path(root) / d).resolve() not in skipped
        )
        found += [Path(root) / n for n in sorted(names) if not n.startswith(".")]
    return found


def fingerprint(
    project_dir: Path,
    profiles_dir: Path,
    args: list[str],
    env: Mapping[str, str],
    skip: Iterable[Path] = (),
    location: Path | None = None,
) -> str:
    """A digest of everything a dbt parse of this project reads; paths under `location`
    (millpond's state dir) count relative to it."""
    from importlib.metadata import version

    def relative(data: bytes) -> bytes:
        return data.replace(str(location).encode(), b"<state>") if location else data

    digest = hashlib.sha256()
    header = json.dumps([version("dbt-core"), str(project_dir.resolve()), args]).encode()
    digest.update(relative(header))
    names: set[str] = set()
    for folder in (project_dir, profiles_dir):
        for path in _files(folder, skip):
            data = relative(path.read_bytes())
            names.update(m.decode() for m in _ENV_VAR.findall(data))
            digest.update(f"{path.relative_to(folder)}\0{len(data)}\0".encode())
            digest.update(data)
    for name in sorted(names | set(env)):
        digest.update(f"{name}={os.environ.get(name, env.get(name))}\0".encode())
    return digest.hexdigest()


def load(target_dir: Path, key: str) -> tuple[Callable[[], Any], str] | None:
    """What decodes the saved manifest (ready for `dbtRunner(manifest=...)`) and
    manifest.json's text, if the last parse had this fingerprint; None otherwise (dbt must
    parse). Decoding imports dbt and takes seconds, and building the graph needs only the
    text, so it is left to the first dbt command to call."""
    marker, saved, manifest_json = (
        target_dir / FINGERPRINT_FILE,
        target_dir / SAVED_MANIFEST,
        target_dir / "manifest.json",
    )
    try:
        if _read(marker) != key and not _take_shared(target_dir, key):
            return None
        data, text = saved.read_bytes(), manifest_json.read_text()
    except OSError:  # missing or half-written
        return None

    def decoded() -> Any:
        manifest = _decode(data)
        manifest.build_flat_graph()
        return manifest

    return decoded, text


def warm(target_dir: Path) -> bool:
    """Decode the saved manifest once and drop it: dbt's deserializers compile their code on
    first use (~0.2 s), so a process that forks node processes (millpond.cli.warm) pays that
    once for all of them. False when there is no saved manifest to decode."""
    try:
        _decode((target_dir / SAVED_MANIFEST).read_bytes())
    except Exception:  # missing, or of another dbt version: children decode on their own
        return False
    return True


def _decode(data: bytes) -> Any:
    """dbt's Manifest from the bytes of partial_parse.msgpack."""
    from dbt.contracts.graph.manifest import Manifest
    from dbt.parser.manifest import extended_mashumuro_decoder

    return Manifest.from_msgpack(data, decoder=extended_mashumuro_decoder)


def save(target_dir: Path, key: str) -> None:
    """Remember the fingerprint of the parse that just wrote the target folder, and keep that
    parse in the machine-wide cache."""
    _mark(target_dir, key)
    with contextlib.suppress(OSError):  # a read-only or full cache costs a clone a parse
        _share(target_dir, key)


# A caller that must not write the machine-wide cache (`millpond check`) points it elsewhere
# for its own thread only, so a process serving other requests keeps the real one.
_cache_dir_here: ContextVar[Path | None] = ContextVar("millpond_dbt_cache_dir", default=None)


@contextlib.contextmanager
def cache_dir_set_to(folder: Path) -> Iterator[None]:
    """Within the block, in this thread, the machine-wide cache is `folder`."""
    token = _cache_dir_here.set(folder)
    try:
        yield
    finally:
        _cache_dir_here.reset(token)


def shared_root() -> Path:
    base = (
        _cache_dir_here.get()
        or os.environ.get("MILLPOND_CACHE_DIR")
        or Path.home() / ".cache" / "millpond"
    )
    return Path(base) / "dbt-parse"


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _mark(target_dir: Path, key: str) -> None:
    marker = target_dir / FINGERPRINT_FILE
    tmp = marker.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(key)
    os.replace(tmp, marker)


def _share(target_dir: Path, key: str) -> None:
    """Copy the parse into the cache as a whole folder renamed into place, so a reader sees
    all of its files or none."""
    root = shared_root()
    entry = root / key
    if entry.is_dir():
        return
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".new-"))
    try:
        for name in SHARED_FILES:
            shutil.copyfile(target_dir / name, tmp / name)
        os.replace(tmp, entry)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not entry.is_dir():
            raise
    _prune(root)


def _take_shared(target_dir: Path, key: str) -> bool:
    """Copy a cached parse with this fingerprint into the target folder; False if none."""
    entry = shared_root() / key
    if not all((entry / name).is_file() for name in SHARED_FILES):
        return False
    target_dir.mkdir(parents=True, exist_ok=True)
    try:
        for name in SHARED_FILES:
            tmp = target_dir / f".{name}.{os.getpid()}.tmp"
            shutil.copyfile(entry / name, tmp)
            os.replace(tmp, target_dir / name)
        os.utime(entry)  # recently used: kept by _prune
    except OSError:
        return False
    _mark(target_dir, key)
    return True


def _prune(root: Path) -> None:
    entries = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for stale in entries[SHARED_KEPT:]:
        shutil.rmtree(stale, ignore_errors=True)


def forget(target_dir: Path) -> None:
    """Before a parse rewrites the target folder: no reader may trust it until it is done."""
    (target_dir / FINGERPRINT_FILE).unlink(missing_ok=True)
