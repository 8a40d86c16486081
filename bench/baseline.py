"""Bare DuckDB doing what `millpond run` does, on the same files: the yardstick for overhead.

Loads every export file of the inbox into raw.erp__<table> (CSV with read_csv, .xlsx through
python-calamine), then runs the dbt project's compiled SQL directly, models in dependency order
(views and tables as dbt materializes them) and every data test, and finally copies the marts
into a snapshot file. No lake, no manifest, no ledger, no orchestrator, no retries.

Usage: python bench/baseline.py <project dir with millpond.yml> <work dir> [--manifest FILE]
Prints one JSON line: {"seconds": ..., "load_s": ..., "sql_s": ..., "tests": N, "failed": N}.
`--compile-only` writes <work dir>/target/manifest.json and stops; `--manifest FILE` reuses one,
so the timed process never imports dbt and its peak RSS is DuckDB's alone (what `just bench`
does).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import duckdb
from python_calamine import CalamineWorkbook


def compile_project(project: Path, warehouse: Path, target: Path) -> dict:
    """`dbt compile` once (not timed) to get the SQL millpond's dbt nodes run."""
    from dbt.cli.main import dbtRunner

    os.environ.update(
        MILLPOND_WAREHOUSE_PATH=str(warehouse),
        DBT_TARGET_PATH=str(target),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
    )
    transform = project / "transform"
    result = dbtRunner().invoke(
        ["--quiet", "compile", "--project-dir", str(transform), "--profiles-dir", str(transform)]
    )
    assert result.success, result.exception
    return json.loads((target / "manifest.json").read_text())


def load_raw(con: duckdb.DuckDBPyConnection, inbox: Path) -> None:
    con.execute("create schema if not exists raw")
    for path in sorted(inbox.iterdir()):
        table = f"raw.erp__{path.stem}"
        if path.suffix == ".csv":
            con.execute(
                f"create or replace table {table} as select *, 'p' as _partition_id, "
                f"now()::timestamp as _loaded_at from read_csv('{path}')"
            )
        elif path.suffix == ".xlsx":
            rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python()
            header, data = rows[0], rows[1:]
            columns = {h: [r[i] for r in data] for i, h in enumerate(header)}
            import pyarrow as pa

            frame = pa.table(columns)
            con.register("sheet", frame)
            con.execute(
                f"create or replace table {table} as select *, 'p' as _partition_id, "
                f"now()::timestamp as _loaded_at from sheet"
            )
            con.unregister("sheet")


def ordered(manifest: dict, kind: str) -> list[dict]:
    nodes = {k: v for k, v in manifest["nodes"].items() if v["resource_type"] == kind}
    done: list[str] = []
    pending = dict(nodes)
    while pending:
        for uid, node in sorted(pending.items()):
            if all(d not in pending for d in node["depends_on"]["nodes"]):
                done.append(uid)
                del pending[uid]
                break
    return [nodes[u] for u in done]


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    project, work = Path(args[0]).resolve(), Path(args[1]).resolve()
    work.mkdir(parents=True, exist_ok=True)
    warehouse = work / "baseline.duckdb"
    warehouse.unlink(missing_ok=True)
    if "--manifest" in sys.argv:
        manifest = json.loads(Path(sys.argv[sys.argv.index("--manifest") + 1]).read_text())
    else:
        manifest = compile_project(project, warehouse, work / "target")
    if "--compile-only" in sys.argv:
        return

    started = time.perf_counter()
    con = duckdb.connect(str(warehouse))
    load_raw(con, project / "inbox" / "erp")
    loaded = time.perf_counter()
    for node in ordered(manifest, "model"):
        relation = f"{node['schema']}.{node['alias']}"
        kind = "view" if node["config"]["materialized"] == "view" else "table"
        con.execute(f"create schema if not exists {node['schema']}")
        con.execute(f"create or replace {kind} {relation} as {node['compiled_code']}")
    failed = 0
    tests = ordered(manifest, "test")
    for node in tests:
        row = con.execute(f"select count(*) from ({node['compiled_code']}) t").fetchone()
        failed += bool(row and row[0])
    snapshot = work / "baseline_snapshot.duckdb"
    snapshot.unlink(missing_ok=True)
    con.execute(f"attach '{snapshot}' as snap")
    for schema in ("marts", "aggregates"):
        con.execute(f"create schema snap.{schema}")
        for (name,) in con.execute(
            "select table_name from information_schema.tables where table_schema = ? "
            "and table_catalog = current_database()",
            [schema],
        ).fetchall():
            con.execute(f"create table snap.{schema}.{name} as select * from {schema}.{name}")
    con.execute("detach snap")
    con.close()
    ended = time.perf_counter()
    print(
        json.dumps(
            {
                "seconds": round(ended - started, 2),
                "load_s": round(loaded - started, 2),
                "sql_s": round(ended - loaded, 2),
                "tests": len(tests),
                "failed": failed,
            }
        )
    )


if __name__ == "__main__":
    main()
