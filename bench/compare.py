"""`just bench`: millpond against bare DuckDB, one `dbt build`, DuckDB's COPY and dlt.

    just bench                         # scale 0.1, once
    just bench --scale 0.1 1 --repeat 3
    just bench 0.1 1                   # the same as --scale 0.1 1
    just bench --scale 0.01 --json     # machine-readable results on stdout

For each TPC-H scale, in one session on the same generated files (under .millpond/bench/): a
cold and a warm `millpond run` with the stage breakdown from the ledger, bare DuckDB
(bench/baseline.py), one `dbt build` on the warehouse millpond loaded, dlt's Arrow/Parquet route
(when the `bench` extra is installed), DuckDB's CSV-to-Parquet COPY, the peak RSS of each, and a
cold run under a DuckDB memory limit smaller than the lineitem file. Writes the generated section
of docs/benchmarks.md and docs/benchmarks.png (see bench/harness/). Absolute seconds vary with
the machine; the ratios are the figures to watch.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from harness import report
from harness.session import run_session

REPO = Path(__file__).resolve().parents[1]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="just bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("scales", nargs="*", help="TPC-H scale factors (same as --scale)")
    parser.add_argument("--scale", nargs="+", default=[], help="TPC-H scale factors")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case (medians)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--memory-limit",
        default="256MB",
        help="warehouse.memory_limit of the memory case ('' skips it); default 256MB",
    )
    parser.add_argument(
        "--work", type=Path, default=REPO / ".millpond" / "bench", help="scratch folder"
    )
    parser.add_argument("--docs", type=Path, default=REPO / "docs", help="where the report goes")
    args = parser.parse_args(argv)
    args.scales = [str(float(s)).rstrip("0").rstrip(".") for s in args.scale + args.scales]
    args.scales = list(dict.fromkeys(args.scales)) or ["0.1"]
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str]) -> None:
    args = parse(argv)
    # A stopped session still writes what it measured (the session's `finally`).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load_at_start = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    from millpond.core.config_loading import load_config
    from millpond.flows.server import ensure_server

    # The repo's own local Prefect server (started if needed; PREFECT_API_URL if set): bench
    # projects are deleted and recreated, so a server started under one would lose its home.
    os.environ["PREFECT_API_URL"] = ensure_server(load_config(REPO / "millpond.yml"))
    command = "just bench --scale " + " ".join(args.scales) + f" --repeat {args.repeat}"
    note = f"Load average at the start: {load_at_start}."
    work = args.work.resolve()

    def write(results: dict) -> None:
        """The report as far as the session got (rewritten after every case)."""
        results["meta"] = report.meta(command, args.repeat, results["total_s"], note)
        picture = report.chart(results, args.docs / "benchmarks.png")
        results["chart"] = picture or "matplotlib not installed"
        report.write_docs(args.docs / "benchmarks.md", report.markdown(results, picture))
        (work / "results.json").write_text(json.dumps(results, indent=2, default=str))

    results = run_session(args.scales, args.repeat, work, args.memory_limit or None, write)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        for goal in results["goals"]:
            value = "n/a" if goal["value"] is None else f"{goal['value']:.2f}"
            met = {True: "met", False: "missed", None: "n/a"}[goal["met"]]
            print(f"{goal['goal']:<58} {goal['target']:>8} {value:>8}  {met}")
        print(f"report: {args.docs / 'benchmarks.md'}")


if __name__ == "__main__":
    main(sys.argv[1:])
