"""Database sources: rows/s and peak memory landing a 1 M-row PostgreSQL table.

Usage: python bench/sql_sources.py [postgresql:// admin URL] [rows]

A fresh database gets a table of `rows` rows (integers, a decimal, text, a timestamp with time
zone, nulls). Each way of reading it runs in its own process, so its peak RSS is its own:
- duckdb: DuckDB's own postgres scan, `COPY (FROM pg.public.t) TO 'x.parquet'` (the yardstick);
- sql: millpond's `kind: sql` source landed as a lake partition (Parquet + manifest);
- odbc: millpond's `kind: odbc` source (psqlODBC) landed the same way.
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

WAYS = ["duckdb", "sql", "odbc"]


def run_one(way: str, url: str, work: Path) -> dict[str, float]:
    """Runs inside a child process: one way of reading the table."""
    started = time.perf_counter()
    if way == "duckdb":
        import duckdb

        from millpond.ingest.duckdb_extensions import load_extension
        from millpond.ingest.sources.sql import dsn

        con = duckdb.connect()
        load_extension(con, "postgres_scanner")
        con.execute(f"ATTACH '{dsn(url)[0]}' AS pg (TYPE postgres, READ_ONLY)")
        con.execute(f"COPY (FROM pg.public.bench) TO '{work / 'duckdb.parquet'}'")
        rows = con.execute(f"select count(*) from '{work / 'duckdb.parquet'}'").fetchone()[0]
    else:
        from millpond.ingest.lake import Lake
        from millpond.ingest.landing import land_table

        lake = Lake.from_url(f"file://{work / way}")
        if way == "sql":
            from millpond.ingest.sources.sql import SqlSource, SqlSourceConfig

            config = SqlSourceConfig(kind="sql", url=url, tables={"bench": {}})
            source = SqlSource("pg", config)
        else:
            from millpond.ingest.sources.odbc import OdbcSource, OdbcSourceConfig

            parts = urlsplit(url)
            connection = (
                f"Driver={{PostgreSQL Unicode}};Server={parts.hostname};Port={parts.port};"
                f"Database={parts.path.lstrip('/')};"
            )
            config = OdbcSourceConfig(
                kind="odbc", connection_string=connection, user=parts.username, tables=["bench"]
            )
            source = OdbcSource("pg", config)
        rows = land_table(lake, "pg", source, "bench", "bench", today=dt.date.today()).rows
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rows": rows, "seconds": seconds, "peak_mb": peak_mb}


def main(admin: str, rows: int) -> None:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    url = admin.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "create table bench as select g as id, g % 1000 as customer_id, "
                "(g * 1.37)::numeric(14, 2) as amount, md5(g::text) as note, "
                "case when g % 10 = 0 then null else 'status ' || (g % 7) end as status, "
                "now() - g * interval '1 second' as updated_at "
                f"from generate_series(1, {rows}) g"
            )
        results = {}
        for way in WAYS:
            with tempfile.TemporaryDirectory() as work:
                out = subprocess.run(
                    [sys.executable, __file__, "--one", way, url, work],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                results[way] = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'drop database "{name}" with (force)')
    base = results["duckdb"]["seconds"]
    print(f"{rows:,} rows from PostgreSQL to Parquet")
    print(f"{'way':<8} {'seconds':>8} {'rows/s':>12} {'peak MB':>8} {'vs duckdb':>9}")
    for way, r in results.items():
        rate = r["rows"] / r["seconds"]
        print(
            f"{way:<8} {r['seconds']:>8.2f} {rate:>12,.0f} {r['peak_mb']:>8.0f} "
            f"{r['seconds'] / base:>8.2f}x"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(run_one(sys.argv[2], sys.argv[3], Path(sys.argv[4]))))
    else:
        admin_url = (
            sys.argv[1] if len(sys.argv) > 1 else "postgresql://postgres@127.0.0.1:5432/postgres"
        )
        main(admin_url, int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000)
