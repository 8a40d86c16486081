"""A toy warehouse target, defined only here: one module plus one registration (conftest.py),
to show that a new target passes the contract suite without touching millpond.

`warehouse: {target: folder, folder: {path: ...}}`: raw relations are Parquet copies of the
landed partitions in the folder (one file per partition, so loading twice is a no-op and a
partition can be taken out again), dbt builds in a DuckDB file over them, and publish writes
each mart as Parquet into `published/<run>/` and swaps the `current` link. Readers load the
current publish into an in-memory DuckDB database.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from millpond.core.config import MillpondConfig, TargetConfigBase
from millpond.core.registry import LoadedTable, PublishedMarts, TargetKind

BUILD = "build.duckdb"


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class FolderConfig(TargetConfigBase):
    """`warehouse: {target: folder, folder: {path: ...}}`."""

    path: Path = Path(".millpond/folder")


class FolderTarget:
    """The folder at `path`: raw Parquet, dbt's DuckDB file and the published Parquet."""

    name = "folder"
    _lock = threading.RLock()

    def __init__(self, config: FolderConfig, stack: MillpondConfig) -> None:
        self.root = stack.resolve(config.path)
        self.raw_schema = config.raw_schema
        self.root.mkdir(parents=True, exist_ok=True)

    def writer_lock(self) -> AbstractContextManager[None]:
        return _held(self._lock)

    def _raw_dir(self, source: str, table: str) -> Path:
        return self.root / "raw" / f"{source}__{table}"

    @contextmanager
    def _build(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock, duckdb.connect(str(self.root / BUILD)) as con:
            yield con

    def _refresh_view(self, source: str, table: str) -> None:
        """The raw relation dbt reads: a view over the table's Parquet copies (a table with no
        partition left is an empty relation)."""
        folder = self._raw_dir(source, table)
        relation = f"{quote(self.raw_schema)}.{quote(f'{source}__{table}')}"
        files = sorted(str(p) for p in folder.glob("*.parquet"))
        with self._build() as con:
            con.execute(f"create schema if not exists {quote(self.raw_schema)}")
            if files:
                listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
                con.execute(
                    f"create or replace view {relation} as select * from read_parquet([{listed}])"
                )
            else:
                con.execute(f"create or replace view {relation} as select 1 as _empty where false")

    def _partition_file(self, source: str, table: str, partition_id: str) -> Path:
        digest = hashlib.sha256(partition_id.encode()).hexdigest()[:16]
        return self._raw_dir(source, table) / f"{digest}.parquet"

    def load_table(self, lake: Any, source: str, table: str) -> LoadedTable:
        folder = self._raw_dir(source, table)
        folder.mkdir(parents=True, exist_ok=True)
        new = []
        for manifest in lake.manifests(source, table):
            target = self._partition_file(source, table, manifest.partition_id)
            if target.exists():
                continue
            parts = [pq.read_table(p, filesystem=lake.fs) for p in lake.part_paths(manifest)]
            data = pa.concat_tables(parts).append_column(
                "_partition_id", pa.array([manifest.partition_id] * sum(len(p) for p in parts))
            )
            pq.write_table(data, f"{target}.tmp")
            os.replace(f"{target}.tmp", target)
            new.append(manifest)
        self._refresh_view(source, table)
        relation = f"{self.raw_schema}.{source}__{table}"
        return LoadedTable.of(relation, new, self.row_count(relation))

    def row_count(self, relation: str) -> int:
        schema, _, name = relation.rpartition(".")
        with self._build() as con:
            found = con.execute(f"select count(*) from {quote(schema)}.{quote(name)}").fetchone()
        return int(found[0]) if found else 0

    def loaded_partitions(self, source: str, table: str) -> set[str]:
        files = sorted(self._raw_dir(source, table).glob("*.parquet"))
        return {str(pq.read_table(f, columns=["_partition_id"])[0][0]) for f in files}

    def drop_partition(self, source: str, table: str, partition_id: str) -> bool:
        target = self._partition_file(source, table, partition_id)
        if not target.exists():
            return False
        target.unlink()
        self._refresh_view(source, table)
        return True

    def publish(self, run_id: str, schemas: list[str], keep: int) -> PublishedMarts:
        published = self.root / "published"
        staging = published / f".{run_id}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        tables: dict[str, int] = {}
        with self._build() as con:
            found = con.execute(
                "select table_schema, table_name from information_schema.tables "
                "where table_schema in (select unnest(?)) order by 1, 2",
                [schemas],
            ).fetchall()
            for schema, name in found:
                data = con.execute(f"select * from {quote(schema)}.{quote(name)}").to_arrow_table()
                (staging / schema).mkdir(parents=True, exist_ok=True)
                pq.write_table(data, staging / schema / f"{name}.parquet")
                tables[f"{schema}.{name}"] = data.num_rows
        final = published / run_id
        shutil.rmtree(final, ignore_errors=True)
        staging.mkdir(parents=True, exist_ok=True)
        os.replace(staging, final)
        link = published / ".current.tmp"
        link.unlink(missing_ok=True)
        link.symlink_to(run_id)
        os.replace(link, published / "current")
        return PublishedMarts(str(final), tables)

    def dbt_output(self) -> dict[str, Any]:
        return {"type": "duckdb", "path": str(self.root / BUILD), "schema": "main", "threads": 1}

    def dbt_env(self) -> dict[str, str]:
        return {}

    def release(self) -> None:
        """dbt-duckdb keeps the build file open between invocations: close it."""
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager

        with DuckDBConnectionManager._LOCK:
            environment, DuckDBConnectionManager._ENV = DuckDBConnectionManager._ENV, None
            if environment is not None:
                environment.close()


@contextmanager
def _held(lock: Any) -> Iterator[None]:
    with lock:
        yield


class FolderReader:
    """The current publish, loaded into an in-memory DuckDB database that may read no file."""

    placeholder = "?"
    bad_input: tuple[type[Exception], ...] = (
        duckdb.ConversionException,
        duckdb.InvalidInputException,
    )

    def __init__(self, config: MillpondConfig) -> None:
        current = config.resolve(config.target_config.path) / "published" / "current"
        if not current.exists():
            raise FileNotFoundError(f"{current}: nothing published yet")
        folder = current.resolve()
        self.snapshot: str | None = folder.name
        self.location = str(folder)
        self.con = duckdb.connect()
        for path in sorted(folder.glob("*/*.parquet")):
            schema, name = path.parent.name, path.stem
            self.con.execute(f"create schema if not exists {quote(schema)}")
            self.con.execute(
                f"create table {self.relation(schema, name)} as select * from read_parquet(?)",
                [str(path)],
            )
        self.con.execute("SET enable_external_access = false")

    def relation(self, schema: str, name: str) -> str:
        return f"{quote(schema)}.{quote(name)}"

    def relations(self) -> dict[tuple[str, str], list[tuple[str, str]]]:
        rows = self.con.execute(
            "select table_schema, table_name, column_name, data_type "
            "from information_schema.columns order by table_schema, table_name, ordinal_position"
        ).fetchall()
        found: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for schema, table, column, data_type in rows:
            found.setdefault((schema, table), []).append((column, data_type))
        return found

    def scalar(self, query: str, params: list[Any]) -> Any:
        row = self.con.execute(query, params).fetchone()
        return row[0] if row else None

    def rows(self, query: str, params: list[Any]) -> list[dict[str, Any]]:
        cur = self.con.execute(query, params)
        names = [d[0] for d in cur.description or []]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def batches(self, query: str, params: list[Any]) -> pa.RecordBatchReader:
        return self.con.execute(query, params).fetch_record_batch()

    def close(self) -> None:
        self.con.close()


FOLDER = TargetKind(config_model=FolderConfig, create=FolderTarget, reader=FolderReader)
