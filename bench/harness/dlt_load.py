"""dlt's fastest route for millpond's ingest: Arrow batches, Parquet load files, into DuckDB.

Usage: python bench/harness/dlt_load.py <inbox> <work dir>
One dlt resource per export file yields Arrow record batches (CSV read by DuckDB's parallel
reader, the same one millpond's extracts use; workbooks through python-calamine), dlt writes
them as Parquet load files (no row-by-row normalisation on the Arrow route) and loads them into
`raw` of a DuckDB file. That is what millpond's extract + load stages do (land immutable Parquet,
make it queryable in the warehouse). Timed from creating the pipeline to the load finishing
(imports excluded, as millpond's stage times exclude process start). Prints one JSON line:
{"seconds": ..., "tables": N, "rows": N, "dlt": version}.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dlt
import duckdb
import pyarrow as pa
from python_calamine import CalamineWorkbook

BATCH_ROWS = 1_000_000


def csv_batches(path: Path) -> Iterator[pa.RecordBatch]:
    con = duckdb.connect()
    try:
        yield from con.execute(f"from read_csv('{path}')").to_arrow_reader(BATCH_ROWS)
    finally:
        con.close()


def sheet(path: Path) -> Iterator[pa.Table]:
    rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python()
    header, data = rows[0], rows[1:]
    yield pa.table({str(h): [r[i] for r in data] for i, h in enumerate(header)})


def resources(inbox: Path) -> list[object]:
    found = []
    for path in sorted(inbox.iterdir()):
        if path.suffix == ".csv":
            found.append(dlt.resource(csv_batches(path), name=f"erp__{path.stem}"))
        elif path.suffix == ".xlsx":
            found.append(dlt.resource(sheet(path), name=f"erp__{path.stem}"))
    return found


def main(inbox: Path, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    warehouse = work / "dlt.duckdb"
    warehouse.unlink(missing_ok=True)
    started = time.perf_counter()
    pipeline = dlt.pipeline(
        pipeline_name="millpond_bench",
        pipelines_dir=str(work / "pipelines"),
        destination=dlt.destinations.duckdb(str(warehouse)),
        dataset_name="raw",
    )
    info = pipeline.run(resources(inbox), loader_file_format="parquet", write_disposition="replace")
    seconds = time.perf_counter() - started
    info.raise_on_failed_jobs()
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = [
            name
            for (name,) in con.execute(
                "select table_name from information_schema.tables "
                "where table_schema = 'raw' and table_name like 'erp__%'"
            ).fetchall()
        ]
        rows = sum(con.execute(f"select count(*) from raw.{t}").fetchone()[0] for t in tables)
    print(
        json.dumps(
            {
                "seconds": round(seconds, 3),
                "tables": len(tables),
                "rows": rows,
                "dlt": dlt.__version__,
            }
        )
    )


if __name__ == "__main__":
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())
