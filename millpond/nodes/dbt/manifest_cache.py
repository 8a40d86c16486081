"""Reuse the last parsed dbt manifest while the project is unchanged.

Under Airflow each dbt node is its own process; asking dbt to parse the project in each (even
partially) costs seconds per task. dbt already saves its fully processed manifest
(`partial_parse.msgpack`) in the target folder; while a fingerprint of everything a parse reads
is the same as at that parse, the saved manifest is loaded as it is and dbt is not asked.

The fingerprint covers the project's files (models, macros, seeds, installed packages; not its
target or log folders), the profile, the command-line arguments (`--vars`, target), the values
of the environment variables the project reads with `env_var()` and of the target's dbt env,
and the dbt version. Only digests are stored: vars and env values may be secrets.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

FINGERPRINT_FILE = "millpond-parse.fingerprint"
SAVED_MANIFEST = "partial_parse.msgpack"
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
) -> str:
    """A digest of everything a dbt parse of this project reads."""
    from importlib.metadata import version

    digest = hashlib.sha256()
    digest.update(json.dumps([version("dbt-core"), args]).encode())
    names: set[str] = set()
    for folder in (project_dir, profiles_dir):
        for path in _files(folder, skip):
            data = path.read_bytes()
            names.update(m.decode() for m in _ENV_VAR.findall(data))
            digest.update(f"{path.relative_to(folder)}\0{len(data)}\0".encode())
            digest.update(data)
    for name in sorted(names | set(env)):
        digest.update(f"{name}={os.environ.get(name, env.get(name))}\0".encode())
    return digest.hexdigest()


def load(target_dir: Path, key: str) -> tuple[Any, str] | None:
    """The saved manifest (ready for `dbtRunner(manifest=...)`) and manifest.json's text, if
    the last parse had this fingerprint; None otherwise (dbt must parse)."""
    marker, saved, manifest_json = (
        target_dir / FINGERPRINT_FILE,
        target_dir / SAVED_MANIFEST,
        target_dir / "manifest.json",
    )
    try:
        if marker.read_text() != key:
            return None
        from dbt.contracts.graph.manifest import Manifest
        from dbt.parser.manifest import extended_mashumuro_decoder

        manifest = Manifest.from_msgpack(saved.read_bytes(), decoder=extended_mashumuro_decoder)
        text = manifest_json.read_text()
    except Exception:  # missing, half-written by an older millpond, another dbt version
        return None
    manifest.build_flat_graph()
    return manifest, text


def warm(target_dir: Path) -> bool:
    """Decode the saved manifest once and drop it: dbt's deserializers compile their code on
    first use (~0.2 s), so a process that forks node processes (millpond.cli.warm) pays that
    once for all of them. False when there is no saved manifest to decode."""
    try:
        from dbt.contracts.graph.manifest import Manifest
        from dbt.parser.manifest import extended_mashumuro_decoder

        data = (target_dir / SAVED_MANIFEST).read_bytes()
        Manifest.from_msgpack(data, decoder=extended_mashumuro_decoder)
    except Exception:  # missing, or of another dbt version: children decode on their own
        return False
    return True


def save(target_dir: Path, key: str) -> None:
    """Remember the fingerprint of the parse that just wrote the target folder."""
    marker = target_dir / FINGERPRINT_FILE
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(key)
    os.replace(tmp, marker)


def forget(target_dir: Path) -> None:
    """Before a parse rewrites the target folder: no reader may trust it until it is done."""
    (target_dir / FINGERPRINT_FILE).unlink(missing_ok=True)
