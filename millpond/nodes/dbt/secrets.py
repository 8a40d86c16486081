"""Secrets and dbt: what dbt is told so it hides them, and what millpond scrubs after it.

dbt renders `var()` and `env_var()` into the SQL it runs, so a var holding a secret (a hash
salt, an API key for a pre-hook) would sit in dbt's console lines, `logs/dbt.log`, the
`target/compiled` and `target/run` files and `partial_parse.msgpack`. Two measures keep it out:

- every secret millpond knows (millpond.core.masking's registry: the config's secrets, the
  dbt vars in `dbt.secret_vars` or named like secrets, environment variables named like
  secrets) is also exported as a `DBT_ENV_SECRET_MILLPOND_<digest>` variable; dbt replaces the
  values of `DBT_ENV_SECRET_*` variables by `*****` in every log line it writes, console and
  dbt.log alike. (dbt refuses `env_var('DBT_ENV_SECRET_...')` in models, so those variables
  carry no value a model reads: they only teach dbt what to hide.)
- after each dbt command, the files dbt wrote under the target folder are scrubbed: text
  files get `***`, the binary `partial_parse.msgpack` gets `*`s of the same length so it stays
  decodable (a scrubbed env var value only makes dbt's next partial parse a full one).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from millpond.core.masking import MASK, registered_secrets

ENV_PREFIX = "DBT_ENV_SECRET_MILLPOND_"
# What dbt writes under its target folder that may hold rendered SQL or flags.
_TEXT_SUFFIXES = {".sql", ".json", ".txt", ".yml", ".yaml", ".csv", ".log", ".html"}
_BINARY = {"partial_parse.msgpack"}
# Files millpond itself reads back (the graph and the marts catalog are built from the
# manifest): a short secret that happens to equal part of a model's name ("orders") must not
# rename the model there, so these files are scrubbed of secrets of at least this length only.
_STRUCTURAL = {"manifest.json", "partial_parse.msgpack", "semantic_manifest.json"}
_STRUCTURAL_MIN = 8


def export_to_dbt(secrets: list[str] | None = None) -> None:
    """Tell dbt which values to scrub from its log lines (console and dbt.log)."""
    for value in registered_secrets() if secrets is None else secrets:
        name = ENV_PREFIX + hashlib.sha256(value.encode()).hexdigest()[:16].upper()
        os.environ[name] = value


def scrub_tree(
    folder: Path, secrets: list[str] | None = None, since: float | None = None
) -> list[Path]:
    """Replace every secret in the files under `folder` (dbt's target or docs folder) that
    were written at or after `since` (a time.time(); None: all); returns the files that held
    one. Nothing to do (and nothing read) while no secret is known."""
    values = registered_secrets() if secrets is None else sorted(secrets, key=len, reverse=True)
    if not values or not folder.is_dir():
        return []
    needles = [(v.encode(), MASK.encode(), b"*" * len(v.encode())) for v in values]
    scrubbed = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            binary = name in _BINARY
            if not binary and path.suffix not in _TEXT_SUFFIXES:
                continue
            if since is not None and _modified(path) < since - 2:  # coarse file system clocks
                continue
            wanted = needles
            if name in _STRUCTURAL:
                wanted = [n for n in needles if len(n[0]) >= _STRUCTURAL_MIN]
            if _scrub_file(path, wanted, binary):
                scrubbed.append(path)
    return scrubbed


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _scrub_file(path: Path, needles: list[tuple[bytes, bytes, bytes]], binary: bool) -> bool:
    try:
        data = path.read_bytes()
    except OSError:  # removed meanwhile (a temporary file of dbt's)
        return False
    clean = data
    for secret, mask, same_length in needles:
        clean = clean.replace(secret, same_length if binary else mask)
    if clean == data:
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.scrub")
    tmp.write_bytes(clean)
    os.replace(tmp, path)
    return True
