"""The DuckDB target: one warehouse file the pipeline owns; readers get published snapshots.

Raw relations are views over the lake's Parquet (millpond.targets.duckdb.raw), every writer
holds the file's writer lock (millpond.targets.duckdb.lock), and publish copies the marts into
a snapshot file that `current` points at (millpond.targets.duckdb.publish), which readers
open read-only (millpond.targets.duckdb.reader).
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import duckdb
from pydantic import field_validator

from millpond.core.config import MillpondConfig, TargetConfigBase
from millpond.core.registry import LoadedTable, Probe, PublishedMarts, TargetKind
from millpond.core.sql import quote
from millpond.targets.duckdb import raw, reader
from millpond.targets.duckdb.damage import REPAIR, first_line, is_damage
from millpond.targets.duckdb.health import Damage, snapshot_damage, warehouse_damage
from millpond.targets.duckdb.lock import open_warehouse, warehouse_lock
from millpond.targets.duckdb.publish import orphan_temp_files, publish, remove_orphans
from millpond.targets.duckdb.s3 import LakeAccess


class DuckDBConfig(TargetConfigBase):
    """`warehouse: {target: duckdb, path: ...}`."""

    path: Path = Path(".millpond/warehouse.duckdb")
    threads: int = 1
    # DuckDB's own caps for every connection to the warehouse (millpond's and dbt's). Unset:
    # DuckDB's defaults (80% of RAM, one thread per core). A limit makes DuckDB spill to
    # `<path>.tmp` instead of growing, so a box shared with other services keeps its memory.
    memory_limit: str | None = None
    duckdb_threads: int | None = None

    @field_validator("memory_limit")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None and not _SIZE.fullmatch(value.strip()):
            raise ValueError(f"{value!r} is not a size like 512MB or 2GB")
        return value.strip() if value else value

    @field_validator("duckdb_threads")
    @classmethod
    def _positive(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("must be at least 1")
        return value

    def settings(self) -> dict[str, str | int]:
        """The DuckDB settings every warehouse connection gets (empty: DuckDB's defaults)."""
        found: dict[str, str | int] = {}
        if self.memory_limit:
            found["memory_limit"] = self.memory_limit
        if self.duckdb_threads:
            found["threads"] = self.duckdb_threads
        return found


_SIZE = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


class DuckDBTarget:
    """The warehouse file at `path`, under its writer lock."""

    name = "duckdb"

    def __init__(self, config: DuckDBConfig, stack: MillpondConfig) -> None:
        self.config = config
        # An S3 lake: every connection gets httpfs and the lake's secret (targets.duckdb.s3).
        self.s3 = LakeAccess(stack.lake) if stack.lake.url.startswith("s3://") else None
        self.settings = config.settings()
        self._setup = self._prepare if (self.s3 or self.settings) else None
        self.path = stack.resolve(config.path)
        self.raw_schema = config.raw_schema
        self.published_dir = stack.published_dir

    def _prepare(self, con: duckdb.DuckDBPyConnection) -> None:
        """What every warehouse connection gets first: the DuckDB settings (memory_limit,
        threads; validated, so safe to inline) and an S3 lake's httpfs and secret."""
        for name, value in self.settings.items():
            con.execute(f"set {name} = '{value}'")
        if self.s3:
            self.s3.setup(con)

    def writer_lock(self) -> AbstractContextManager[None]:
        return warehouse_lock(self.path)

    def connect(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A writable connection under the writer lock (a Python node's `warehouse()`)."""
        return open_warehouse(self.path, self._setup)

    def load_table(self, lake: Any, source: str, table: str) -> LoadedTable:
        with open_warehouse(self.path, self._setup) as con:
            return raw.load_table(con, lake, self.raw_schema, source, table)

    def loaded_partitions(self, source: str, table: str) -> set[str]:
        with open_warehouse(self.path, self._setup) as con:
            return raw.loaded_partitions(con, self.raw_schema, source, table)

    def drop_partition(self, source: str, table: str, partition_id: str) -> bool:
        with open_warehouse(self.path, self._setup) as con:
            return raw.drop_partition(con, self.raw_schema, source, table, partition_id)

    def row_count(self, relation: str) -> int:
        schema, _, name = relation.rpartition(".")
        with open_warehouse(self.path, self._setup) as con:
            row = con.execute(f"select count(*) from {quote(schema)}.{quote(name)}")
            found = row.fetchone()
        return int(found[0]) if found else 0

    def publish(self, run_id: str, schemas: list[str], keep: int) -> PublishedMarts:
        done = publish(self.path, self.published_dir, run_id, schemas, keep, self._setup)
        return PublishedMarts(str(done.path), done.tables, done.path.stat().st_size)

    # --- damaged state (millpond.runtime.damage, millpond doctor) ---------------------------

    def health(self, deep: bool = False) -> Damage | None:
        """The warehouse file's problem (missing, unreadable), or None; `deep` reads every
        relation too (millpond.targets.duckdb.health)."""
        with warehouse_lock(self.path):
            return warehouse_damage(self.path, deep)

    def probe(self, timeout: float) -> Probe:
        """The warehouse file opens read-only and its catalog reads (`health` without its
        lock, whose file a check must not create); missing is fine (the first run makes it),
        and so is busy (a run or a BI tool holds it)."""
        where = "warehouse.duckdb.path"
        if not self.path.exists():
            return Probe(detail=f"{self.path}: not created yet (the first run creates it)")
        try:
            con = duckdb.connect(str(self.path), read_only=True)
        except duckdb.Error as exc:
            if not is_damage(exc):
                return Probe(detail=f"{self.path}: in use by another process ({first_line(exc)})")
            return Probe(
                problems=(f"{where}: {self.path} cannot be read ({first_line(exc)}); {REPAIR}",)
            )
        try:
            count = con.execute(
                "select count(*) from duckdb_tables() where database_name = current_database()"
            ).fetchone()
        except duckdb.Error as exc:
            return Probe(
                problems=(f"{where}: {self.path} cannot be read ({first_line(exc)}); {REPAIR}",)
            )
        finally:
            con.close()
        return Probe(detail=f"{self.path}: opens, {count[0] if count else 0} table(s)")

    def published_health(self, expected: bool = True) -> Damage | None:
        """What is wrong with the snapshot readers open (`current`), or None; `expected`:
        a publish succeeded, so no `current` at all is damage too."""
        return snapshot_damage(self.published_dir, expected)

    def orphan_files(self) -> list[Path]:
        """Temp files killed publishes left in the published folder."""
        return orphan_temp_files(self.published_dir)

    def remove_orphan_files(self) -> tuple[int, int]:
        """Delete them under the warehouse lock (no publish is writing one now)."""
        with warehouse_lock(self.path):
            return remove_orphans(self.published_dir)

    def set_aside(self, suffix: str) -> Path | None:
        """Move the warehouse file (and its WAL) to `<path>.<suffix>`, so the next connection
        starts an empty one that loads rebuild from the lake; the moved file is kept for a
        person to look at or delete. None when there was no file."""
        with warehouse_lock(self.path):
            if not self.path.exists():
                return None
            aside = self.path.with_name(f"{self.path.name}.{suffix}")
            self.path.rename(aside)
            wal = Path(f"{self.path}.wal")
            if wal.exists():
                wal.rename(Path(f"{aside}.wal"))
            return aside

    def dbt_output(self) -> dict[str, Any]:
        output: dict[str, Any] = {
            "type": "duckdb",
            "path": str(self.path),
            "schema": "main",
            "threads": self.config.threads,
        }
        if self.s3:
            self.s3.install()
            output["secrets"] = [self.s3.dbt_secret()]
        if self.settings:  # only when set: an unchanged profile keeps dbt's partial parse
            output["settings"] = dict(self.settings)
        return output

    def dbt_env(self) -> dict[str, str]:
        return self.s3.dbt_env() if self.s3 else {}

    def release(self) -> None:
        _release_dbt_duckdb()


def _release_dbt_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open between invocations.

    dbt-duckdb caches one environment (and its open database) per process; left open, the
    warehouse file stays locked after the node released millpond's writer lock, and another
    process (a `run-node` under Airflow, a maintenance script) fails with a DuckDB lock error.
    Reopening costs a few milliseconds per node. Uses the adapter's class attributes: there is
    no public API for it in dbt-duckdb 1.11.
    """
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # dbt-duckdb not installed: nothing cached
        return
    with DuckDBConnectionManager._LOCK:
        environment = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
        if environment is not None:
            environment.close()


DUCKDB = TargetKind(
    config_model=DuckDBConfig,
    create=DuckDBTarget,
    reader=reader.open_reader,
    published_key=reader.published_key,
)
