"""Scrubbing dbt's target folder: text files get ***, the msgpack parse keeps its length (so
it still decodes), files older than the command are left unread, no secret means no work."""

from __future__ import annotations

import os
from pathlib import Path

from millpond.nodes.dbt.secrets import ENV_PREFIX, export_to_dbt, scrub_tree

SECRET = "salt-unit-3e8a1f"


def write(path: Path, data: bytes, age: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if age:
        old = path.stat().st_mtime - age
        os.utime(path, (old, old))
    return path


def test_text_files_are_masked_and_the_msgpack_keeps_its_length(tmp_path: Path) -> None:
    sql = write(tmp_path / "run" / "m.sql", f"select '{SECRET}' as s".encode())
    parse = write(tmp_path / "partial_parse.msgpack", b"\xa5abcde" + SECRET.encode() + b"\x00")
    plain = write(tmp_path / "compiled" / "n.sql", b"select 1")

    scrubbed = scrub_tree(tmp_path, [SECRET])

    assert sorted(scrubbed) == sorted([sql, parse])
    assert sql.read_text() == "select '***' as s"
    assert parse.read_bytes() == b"\xa5abcde" + b"*" * len(SECRET) + b"\x00"
    assert plain.read_text() == "select 1"


def test_files_from_before_the_command_are_not_read(tmp_path: Path) -> None:
    import time

    old = write(tmp_path / "run" / "old.sql", SECRET.encode(), age=3600)
    new = write(tmp_path / "run" / "new.sql", SECRET.encode())

    scrub_tree(tmp_path, [SECRET], since=time.time() - 1)

    assert old.read_text() == SECRET and new.read_text() == "***"


def test_without_a_secret_nothing_changes(tmp_path: Path) -> None:
    sql = write(tmp_path / "run" / "m.sql", b"select 'x'")

    assert scrub_tree(tmp_path, []) == [] and sql.read_text() == "select 'x'"


def test_dbt_is_told_each_secret_under_its_scrubbed_prefix(monkeypatch) -> None:
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(os, "environ", dict(os.environ))

    export_to_dbt([SECRET])

    told = {k: v for k, v in os.environ.items() if k.startswith("DBT_ENV_SECRET_")}
    assert list(told.values()) == [SECRET]
