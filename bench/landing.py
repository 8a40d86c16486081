"""Landing a ~1 M-row CSV: millpond's extract to a local lake and to an S3 lake (moto over
HTTP on 127.0.0.1), next to DuckDB's own `COPY (FROM read_csv(f)) TO 'x.parquet'`.

Each measurement runs in a fresh process, so its peak RSS is its own. Timings on a shared
machine are noisy: compare the ratios of one run, not absolute seconds.

    .venv/bin/python bench/landing.py            # TPC-H orders at scale 0.7 (1.05 M rows)
    .venv/bin/python bench/landing.py --scale 0.1
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

KEY, SECRET = "bench-key", "bench-secret"

CHILD = (
    textwrap.dedent(
        """
    import json, resource, sys, time
    mode, csv_path, work, endpoint = sys.argv[1:5]
    import duckdb
    from pathlib import Path
    from millpond.ingest.sources.files import FilesSource
    from millpond.ingest.sources.files.config import FilesSourceConfig
    from millpond.ingest.lake import Lake
    from millpond.ingest.landing import land_table
    started = time.perf_counter()  # imports excluded
    if mode == "duckdb":
        con = duckdb.connect()
        rows = con.execute(
            f"copy (from read_csv('{csv_path}')) to '{work}/x.parquet' (compression zstd)"
        ).fetchone()[0]
    else:
        inbox = Path(csv_path).parent
        if mode == "local":
            lake = Lake.from_url(f"file://{work}/lake")
        else:
            import boto3
            boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="KEY",
                         aws_secret_access_key="SECRET", region_name="us-east-1"
                         ).create_bucket(Bucket="bench")
            lake = Lake.from_url("s3://bench/lake", endpoint, "us-east-1", "KEY", "SECRET")
        config = FilesSourceConfig(kind="files", path=str(inbox), tables=["orders"])
        result = land_table(lake, "bench", FilesSource("bench", config, inbox), "orders", "r1")
        rows = result.rows
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"mode": mode, "rows": rows, "seconds": seconds, "peak_rss_mib": peak_mib}
    print("RESULT " + json.dumps(result))
    """
    )
    .replace("KEY", KEY)
    .replace("SECRET", SECRET)
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def generate(folder: Path, scale: float) -> Path:
    tool = Path(sys.executable).with_name("tpchgen-cli")
    subprocess.run(
        [str(tool), "csv", "-s", str(scale), "--tables", "orders", "--output-dir", str(folder)],
        check=True,
        capture_output=True,
    )
    return folder / "orders.csv"


def measure(mode: str, csv_path: Path, endpoint: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as work:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, mode, str(csv_path), work, endpoint],
            check=True,
            capture_output=True,
            text=True,
        )
    # DuckDB's progress bar may share the line (it ends with \r, not \n).
    found = [x.split("RESULT ", 1)[1] for x in done.stdout.splitlines() if "RESULT " in x]
    if not found:
        raise RuntimeError(f"{mode}: no result\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    line = found[-1]
    return json.loads(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.7)
    args = parser.parse_args()
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            csv_path = generate(Path(tmp) / "inbox", args.scale)
            size_mib = csv_path.stat().st_size / 2**20
            print(f"{csv_path.name}: {size_mib:.0f} MiB")
            print(f"{'mode':<8} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'peak RSS MiB':>13}")
            for mode in ("duckdb", "local", "s3"):
                r = measure(mode, csv_path, f"http://127.0.0.1:{port}")
                print(
                    f"{r['mode']:<8} {r['rows']:>10,} {r['seconds']:>8.2f} "
                    f"{r['rows'] / r['seconds']:>10,.0f} {r['peak_rss_mib']:>13.0f}"
                )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
