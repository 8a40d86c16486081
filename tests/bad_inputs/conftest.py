"""Shared harness of the bad-input suite (tests/bad_inputs): a tiny project folder with its
own state dir, and a snapshot of that state to compare before and after a refused command.

A refused command must change nothing a user keeps: no file under the project's state dir
(or a local lake) appears, grows or changes, and no ledger row is written. `state_snapshot`
takes what such a comparison needs: the relative path, size and sha256 of every file, and the
row count of every ledger table when a ledger URL is given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import write_acme_project

# Files that change without any state change a user could notice: the run log of a command
# that was refused, caches of parsed dbt projects.
IGNORED_PARTS = ("logs", "cache")


def file_states(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under `root`: relative path -> (size, sha256)."""
    if not root.exists():
        return {}
    found = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or path.is_symlink() or set(relative.parts) & set(IGNORED_PARTS):
            continue
        found[str(relative)] = (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def ledger_counts(url: str) -> dict[str, int]:
    """Row count of every table of the ledger's `millpond` schema ({} before migration)."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "select table_name from information_schema.tables "
                "where table_schema = 'millpond' and table_type = 'BASE TABLE' order by 1"
            )
        ]
        return {
            t: int(conn.execute(f'select count(*) from millpond."{t}"').fetchone()[0])  # type: ignore[index]
            for t in tables
        }


def state_snapshot(*roots: Path, ledger_url: str | None = None) -> dict[str, Any]:
    """What a refused command must leave as it was: files under each root, ledger row counts."""
    snapshot: dict[str, Any] = {str(root): file_states(root) for root in roots}
    if ledger_url:
        snapshot["ledger"] = ledger_counts(ledger_url)
    return snapshot


@pytest.fixture
def tiny_project(tmp_path: Path) -> Callable[..., Path]:
    """A factory of tiny project folders (the acme dbt project and five orders rows), each with
    its own state dir: `tiny_project("name", config_extra="lake: ...")`."""

    def make(name: str = "tiny", config_extra: str = "") -> Path:
        return write_acme_project(tmp_path / name, config_extra)

    return make
