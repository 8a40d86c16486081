"""The landing anchor: DuckDB's own CSV-to-Parquet COPY of the inbox's files, one after another.

Usage: python bench/harness/duckdb_copy.py <inbox> <out dir>
Each CSV goes through `COPY (FROM read_csv(f)) TO 'f.parquet' (compression zstd)` (DuckDB's
parallel reader and writer, all cores); the two workbooks through python-calamine into Arrow
and the same COPY, so the anchor writes what millpond's extracts write. No manifest, no hash,
no lake layout. Prints one JSON line: {"seconds": ..., "files": N, "rows": N}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
from python_calamine import CalamineWorkbook


def sheet(path: Path) -> pa.Table:
    rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python()
    header, data = rows[0], rows[1:]
    return pa.table({str(h): [r[i] for r in data] for i, h in enumerate(header)})


def main(inbox: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    con = duckdb.connect()
    rows = files = 0
    for path in sorted(inbox.iterdir()):
        target = out / f"{path.stem}.parquet"
        if path.suffix == ".csv":
            source = f"read_csv('{path}')"
        elif path.suffix == ".xlsx":
            con.register("workbook", sheet(path))
            source = "workbook"
        else:
            continue
        con.execute(f"copy (from {source}) to '{target}' (format parquet, compression zstd)")
        rows += con.execute(f"select count(*) from read_parquet('{target}')").fetchone()[0]
        files += 1
    con.close()
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": round(seconds, 3), "files": files, "rows": rows}))


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())
