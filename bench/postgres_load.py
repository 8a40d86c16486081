"""Raw load throughput into PostgreSQL: millpond's target against a plain COPY of the CSVs.

Usage: python bench/postgres_load.py <project with a landed lake> <postgresql:// admin URL>

Two fresh databases on the same server: one loaded by the PostgreSQL target from the lake's
Parquet partitions (what `load.<source>.<table>` nodes do), one by `COPY ... FROM STDIN (FORMAT
csv, HEADER)` of the original CSV files into tables with the same column types. Prints rows/s
for both and their ratio; the ratio is the figure to compare across machines.
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import duckdb
import psycopg
from psycopg import sql

from ingest.lake import Lake
from millpond.core.config_loading import load_config
from millpond.targets.postgres.load import load_table
from millpond.targets.postgres.types import to_postgres


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


def millpond_load(project: Path, url: str) -> tuple[int, float]:
    config = load_config(project / "millpond.yml")
    lake = Lake.from_config(config)
    rows, started = 0, time.perf_counter()
    for name, source in config.sources.items():
        for table in source.table_names():
            rows += load_table(url, lake, "raw", name, table).rows
    return rows, time.perf_counter() - started


def plain_copy(inbox: Path, url: str) -> tuple[int, float]:
    rows, started = 0, time.perf_counter()
    with psycopg.connect(url) as conn:
        for csv_file in sorted(inbox.glob("*.csv")):
            columns = duckdb.sql(f"describe from read_csv('{csv_file}')").fetchall()
            table = sql.Identifier(csv_file.stem)
            defs = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c[0]), sql.SQL(to_postgres(c[1])))
                for c in columns
            )
            conn.execute(sql.SQL("create table {} ({})").format(table, defs))
            with (
                conn.cursor().copy(
                    sql.SQL("copy {} from stdin (format csv, header)").format(table)
                ) as copy,
                csv_file.open("rb") as fh,
            ):
                while block := fh.read(1 << 20):
                    copy.write(block)
            rows += conn.execute(sql.SQL("select count(*) from {}").format(table)).fetchone()[0]
        conn.commit()
    return rows, time.perf_counter() - started


def main(project: Path, admin: str) -> None:
    target, baseline = fresh_database(admin), fresh_database(admin)
    try:
        ours, ours_s = millpond_load(project, target)
        theirs, theirs_s = plain_copy(project / "inbox" / "erp", baseline)
    finally:
        drop_database(admin, target)
        drop_database(admin, baseline)
    print("CSV files only (the .xlsx tables are loaded by millpond but not by the plain COPY)")
    for label, rows, seconds in (
        ("millpond postgres target", ours, ours_s),
        ("plain COPY of the CSVs", theirs, theirs_s),
    ):
        print(f"{label:<25} {rows:>10,} rows in {seconds:6.1f} s = {rows / seconds:>10,.0f} rows/s")
    print(f"ratio (millpond / COPY time per row): {(ours_s / ours) / (theirs_s / theirs):.2f}x")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), sys.argv[2])
