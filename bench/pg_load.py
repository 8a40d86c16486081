"""The PostgreSQL target's raw load of one partition against a plain COPY of the same rows.

Usage: python bench/pg_load.py <postgresql:// admin URL> [--scale 0.1] [--repeat 3]
    [--route binary|csv]

TPC-H lineitem (tpchgen-cli, Parquet) is landed once as one lake partition; each repeat loads it
into a fresh database with `load_table` (what `load.<source>.<table>` runs: the table's DDL,
COPY and bookkeeping in one transaction), and, into another fresh database, COPYs the same rows
as CSV written by DuckDB beforehand (`COPY ... FROM STDIN (FORMAT csv)` into a table with the same
column types: the floor). Prints the medians and their ratio (millpond / COPY time per row).
`--route csv` forces the CSV route the target used before binary COPY (the "before" figure).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import duckdb
import psycopg
import pyarrow.parquet as pq
from psycopg import sql

from millpond.core.registry import SourceItem, TableState
from millpond.ingest.lake import Lake
from millpond.ingest.landing import land_table
from millpond.targets.postgres import load as pg_load
from millpond.targets.postgres.types import to_postgres


class ParquetFile:
    """One Parquet file as a source item, read in batches."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def items(self, table: str, state: TableState) -> list[SourceItem]:
        file = pq.ParquetFile(self.path)
        return [
            SourceItem(
                name=self.path.name,
                fingerprint=self.path.name,
                size=self.path.stat().st_size,
                read=lambda: (file.schema_arrow, file.iter_batches(122_880)),
            )
        ]

    def warnings(self) -> list[str]:
        return []


def fresh_database(admin: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return admin.rsplit("/", 1)[0] + "/" + name


def drop_database(admin: str, url: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database {} with (force)").format(sql.Identifier(url.rsplit("/", 1)[1]))
        )


def millpond_load(lake: Lake, url: str) -> tuple[int, float]:
    started = time.perf_counter()
    loaded = pg_load.load_table(url, lake, "raw", "tpch", "lineitem")
    return loaded.table_rows, time.perf_counter() - started


def plain_copy(csv_file: Path, columns: list[tuple[str, str]], url: str) -> tuple[int, float]:
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        defs = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(to_postgres(t))) for c, t in columns
        )
        conn.execute(sql.SQL("create table lineitem ({})").format(defs))
        cursor = conn.cursor()
        with (
            cursor.copy("copy lineitem from stdin (format csv)") as copy,
            csv_file.open("rb") as fh,
        ):
            while block := fh.read(1 << 20):
                copy.write(block)
        rows = cursor.rowcount
        conn.commit()
    return rows, time.perf_counter() - started


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="pg_load_bench_"))
    try:
        measure(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(work: Path) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("admin")
    parser.add_argument("--scale", default="0.1")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--route", choices=["binary", "csv"], default="binary")
    args = parser.parse_args()
    if args.route == "csv":
        pg_load.binary_ready = lambda incoming, columns: False
    tpchgen = Path(sys.executable).parent / "tpchgen-cli"
    subprocess.run(
        [tpchgen, "parquet", "-s", args.scale, "-T", "lineitem", "-o", str(work), "-q"],
        check=True,
    )
    parquet = work / "lineitem.parquet"
    lake = Lake.from_url(f"file://{work / 'lake'}")
    land_table(lake, "tpch", ParquetFile(parquet), "lineitem", "bench", today=dt.date.today())
    # The same rows as the lake holds them, written as CSV by DuckDB (not timed).
    manifest = next(iter(lake.manifests("tpch", "lineitem")))
    files = [str(lake.local_path(p)) for p in lake.part_paths(manifest)]
    duck = duckdb.connect()
    duck.execute(f"create view rows as from read_parquet({files!r})")
    columns = [(c, t) for c, t, *_ in duck.execute("describe rows").fetchall()]
    csv_file = work / "lineitem.csv"
    duck.execute(f"copy rows to '{csv_file}' (format csv, header false)")

    ours: list[float] = []
    theirs: list[float] = []
    rows = 0
    for _ in range(args.repeat):
        for runner, times in (
            (lambda url: millpond_load(lake, url), ours),
            (lambda url: plain_copy(csv_file, columns, url), theirs),
        ):
            url = fresh_database(args.admin)
            try:
                rows, seconds = runner(url)
            finally:
                drop_database(args.admin, url)
            times.append(seconds)
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    print(f"lineitem scale {args.scale}: {rows:,} rows, route {args.route}, {args.repeat} runs")
    for label, times in (("millpond load_table", ours), ("plain COPY of the CSV", theirs)):
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(f"{label:<23} median {statistics.median(times):6.2f} s  ({runs})")
    print(f"ratio (millpond / COPY): {ours_s / theirs_s:.2f}x")


if __name__ == "__main__":
    main()
