"""Is the DuckDB warehouse and its published snapshot what the ledger thinks they are?

The ledger remembers what the warehouse holds (loaded partitions, model fingerprints), but the
warehouse is a file a person can delete, a disk can damage, and a kill can leave half-copied.
Before a run trusts that bookkeeping it asks here: does the file exist and open, does
`current` resolve to a snapshot that opens, are there temp files a killed publish left behind.
Every answer names the file, and says what `millpond doctor --repair` does about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from millpond.targets.duckdb.damage import first_line, is_damage
from millpond.targets.duckdb.publish import CURRENT


@dataclass(frozen=True)
class Damage:
    """One thing wrong with the warehouse or its snapshots, by file."""

    what: str  # warehouse | snapshot | temp file
    path: Path
    problem: str  # missing | unreadable | dangling | orphan
    detail: str = ""

    def message(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.what} {self.path} is {self.problem}{detail}"


def warehouse_damage(path: Path, deep: bool = False) -> Damage | None:
    """The warehouse file's problem, or None when it opens and its catalog reads.

    `deep` also reads a row of every table and view (what `millpond doctor` does): a damaged
    data block shows only when it is read. The caller holds the warehouse's writer lock."""
    if not path.exists():
        return Damage("warehouse", path, "missing")
    try:
        con = duckdb.connect(str(path))
    except duckdb.Error as exc:
        if not is_damage(exc):
            raise  # busy (another process holds the file: a DuckDB CLI, a BI tool), not damaged
        return Damage("warehouse", path, "unreadable", first_line(exc))
    try:
        relations = con.execute(
            "select schema_name, table_name, 'table' from duckdb_tables() "
            "where database_name = current_database() and not internal "
            "union all select schema_name, view_name, 'view' from duckdb_views() "
            "where database_name = current_database() and not internal"
        ).fetchall()
        if deep:
            for schema, name, kind in relations:
                problem = _unreadable_relation(con, schema, name, kind == "table")
                if problem:
                    return Damage("warehouse", path, "unreadable", problem)
    except duckdb.Error as exc:
        return Damage("warehouse", path, "unreadable", first_line(exc))
    finally:
        con.close()
    return None


def _unreadable_relation(
    con: duckdb.DuckDBPyConnection, schema: str, name: str, table: bool
) -> str | None:
    """Why a relation cannot be read, or None. A table's data lives in the file: every row
    and column is read (a hash of each row), since a damaged block shows only when read. A
    view's data does not (raw views read the lake, whose check is apart): it only binds."""
    relation = f'"{schema}"."{name}"'
    sql = (
        f"select count(*), bit_xor(hash(t)) from {relation} as t"
        if table
        else f"select * from {relation} limit 0"
    )
    try:
        con.execute(sql).fetchall()
    except duckdb.Error as exc:
        text = str(exc).lower()
        if "no files found" in text or "no such file" in text:
            return None  # lake files that are gone: the lake's damage, found by its check
        if not is_damage(exc):
            return None  # a stale view (a Binder error) is dbt's to rebuild, not damage
        return f"{schema}.{name}: {first_line(exc)}"
    return None


def snapshot_damage(published_dir: Path, expected: bool = False) -> Damage | None:
    """What is wrong with `current`: a link to a snapshot that is gone (dangling), or one that
    does not open, or (when a publish is `expected`, the ledger says one succeeded) no link at
    all; None when it opens."""
    link = published_dir / CURRENT
    if not link.is_symlink() and not link.exists():
        return Damage("snapshot", link, "missing") if expected else None
    if not link.exists():
        target = Path(str(link.readlink())) if link.is_symlink() else link
        return Damage("snapshot", link, "dangling", f"points at {target}, which is gone")
    try:
        with duckdb.connect(str(link), read_only=True) as con:
            con.execute(
                "select count(*) from duckdb_tables() where database_name = current_database()"
            ).fetchall()
    except duckdb.Error as exc:
        return Damage("snapshot", link.resolve(), "unreadable", first_line(exc))
    return None
