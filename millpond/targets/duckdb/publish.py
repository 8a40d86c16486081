"""Publish: copy the tested marts into a snapshot file and repoint `current` atomically.

Readers (API, notebooks, BI) never open the warehouse, which the pipeline holds for writing.
They open `<state>/published/current` read-only: a symlink to `<run_id>.duckdb`, replaced by
rename, so a reader sees the previous run's marts or this one's, never a mix and never a half-
written file. A failed run never reaches publish, so `current` keeps the last good run. Which
snapshot is current follows the order of publishing under the warehouse lock, never the run
ids' spelling.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from millpond.core.logs import logger
from millpond.core.sql import quote
from millpond.targets.duckdb.lock import open_warehouse, warehouse_lock
from millpond.targets.duckdb.raw import literal

CURRENT = "current"
# millpond's own tables in the raw schema (which partitions and files a raw view reads) are
# not data: a published raw schema leaves them out.
BOOKKEEPING_PREFIX = "_millpond"


@dataclass(frozen=True)
class Published:
    """A published snapshot and the row count of each table in it."""

    path: Path
    tables: dict[str, int]

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


def snapshot_name(run_id: str) -> str:
    """A file name for a run's snapshot: run ids come from orchestrators (Airflow's
    `manual__2026-11-28T06:00:00+00:00`), so anything but [A-Za-z0-9_.:+-] becomes `_`."""
    return re.sub(r"[^A-Za-z0-9_.:+-]", "_", run_id).lstrip(".") or "run"


def publish(
    warehouse: Path,
    published_dir: Path,
    run_id: str,
    schemas: list[str],
    keep: int,
    setup: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
) -> Published:
    """Snapshot every table and view of `schemas` as tables, then switch readers to it."""
    published_dir.mkdir(parents=True, exist_ok=True)
    name = snapshot_name(run_id)
    target = published_dir / f"{name}.duckdb"
    staging = published_dir / f".{name}.duckdb.tmp"
    tables: dict[str, int] = {}
    # Copy and switch under the warehouse lock: no other writer changes the marts in between,
    # and two publishers cannot interleave their switches.
    with warehouse_lock(warehouse):
        # Only a publish writes temp files here, under this lock: any there now were left by
        # a publish that was killed, and would stay forever.
        orphans, size = remove_orphans(published_dir)
        if orphans:
            logger.info(f"removed {orphans} temp files ({size:,} bytes) left by a killed publish")
        try:
            _copy_marts(warehouse, staging, schemas, tables, setup)
        except BaseException:
            staging.unlink(missing_ok=True)
            raise
        os.replace(staging, target)
        # The snapshot is of the warehouse as it is now, taken under its writer lock: the
        # latest publish is always the newest state, whatever its run id looks like.
        point_current(published_dir, target.name)
        removed = prune(published_dir, keep)
    logger.info(f"published {len(tables)} tables to {target.name}; removed {removed} old snapshots")
    return Published(target, tables)


def _copy_marts(
    warehouse: Path,
    staging: Path,
    schemas: list[str],
    tables: dict[str, int],
    setup: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
) -> None:
    """Copy every relation of `schemas` (millpond's bookkeeping tables left out) into a new
    DuckDB file, counting rows into `tables` (`setup` lets views over an S3 lake be read)."""
    with open_warehouse(warehouse, setup) as con:
        relations = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_catalog = current_database() and table_schema in (select unnest($1)) "
            f"and not starts_with(table_name, '{BOOKKEEPING_PREFIX}') order by 1, 2",
            [schemas],
        ).fetchall()
        if not relations:
            raise RuntimeError(f"nothing to publish: no tables in schemas {schemas}")
        con.execute(f"attach {literal(str(staging))} as snapshot")
        try:
            for schema in sorted({s for s, _ in relations}):  # `main` exists in every file
                con.execute(f"create schema if not exists snapshot.{quote(schema)}")
            for schema, name in relations:
                relation = f"{quote(schema)}.{quote(name)}"
                con.execute(f"create table snapshot.{relation} as select * from {relation}")
                count = con.execute(f"select count(*) from snapshot.{relation}").fetchone()
                tables[f"{schema}.{name}"] = int(count[0]) if count else 0
        finally:
            con.execute("detach snapshot")


def orphan_temp_files(published_dir: Path) -> list[Path]:
    """Files a killed publish left behind: a staged snapshot (`.<run>.duckdb.tmp`), its WAL,
    a half-made link. Only a publish writes them, under the warehouse lock, so a caller that
    holds that lock knows no live process is writing any of them."""
    if not published_dir.is_dir():
        return []
    found = [
        p
        for p in published_dir.iterdir()
        if p.name.startswith(".") and p.name.endswith((".duckdb.tmp", ".duckdb.tmp.wal"))
    ]
    link = published_dir / f".{CURRENT}.tmp"
    if link.is_symlink() or link.exists():
        found.append(link)
    return sorted(found)


def remove_orphans(published_dir: Path) -> tuple[int, int]:
    """Delete the orphan temp files; (files, bytes) removed. The caller holds the lock."""
    files = size = 0
    for path in orphan_temp_files(published_dir):
        with contextlib.suppress(OSError):
            size += path.lstat().st_size
            path.unlink()
            files += 1
    return files, size


def point_current(published_dir: Path, name: str) -> None:
    """Atomically make `current` point at the named snapshot (rename over the old link)."""
    link = published_dir / CURRENT
    tmp = published_dir / f".{CURRENT}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(name)
    os.replace(tmp, link)


def current_snapshot(published_dir: Path) -> Path | None:
    """The snapshot readers see now, or None before the first successful run."""
    link = published_dir / CURRENT
    return link.resolve() if link.is_symlink() and link.exists() else None


def prune(published_dir: Path, keep: int) -> int:
    """Delete all but the newest `keep` snapshots; the current one is never deleted."""
    current = current_snapshot(published_dir)
    snapshots = sorted(
        published_dir.glob("*.duckdb"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    removed = 0
    for old in snapshots[keep:]:
        if old.resolve() != current:
            old.unlink(missing_ok=True)
            removed += 1
    return removed


def open_published(published_dir: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the current snapshot: what notebooks and the API use."""
    current = current_snapshot(published_dir)
    if current is None:
        raise FileNotFoundError(f"{published_dir}: nothing published yet; run `just run` first")
    return duckdb.connect(str(current), read_only=True)
