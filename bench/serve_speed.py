"""`python bench/serve_speed.py [--config millpond.yml]`: how fast one uvicorn worker serves marts.

Starts the API (one worker) on a free 127.0.0.1 port over a stack that has published marts
(e.g. a temp project after `millpond run --demo-if-empty 0.1`), then measures
- req/s of `/health` and of `/marts/{mart}?limit=10` (with `wrk` if installed, else httpx
  from a few threads), the same page for many offsets (no two requests alike), and
- rows/s of a whole-mart export as JSON, CSV and Arrow (streamed, read to the last byte by
  curl if installed; the better of two),
and prints each as a ratio to the goals of issue 26.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

GOALS = {"page req/s": 1_000, "json rows/s": 250_000, "arrow rows/s": 1_500_000}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(config: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MILLPOND_CONFIG": str(config.resolve())}
    command = [sys.executable, "-m", "uvicorn", "millpond.serve.app:app", "--port", str(port)]
    command += ["--workers", "1", "--log-level", "warning", "--no-access-log"]
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code < 500:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the API did not start")


def with_wrk(url: str, seconds: int, connections: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} failed answers\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def with_threads(urls: list[str], seconds: int, threads: int) -> float:
    done = [0] * threads
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < stop:
                response = http.get(urls[done[i] % len(urls)])
                response.raise_for_status()
                done[i] += 1

    began = time.monotonic()
    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(done) / (time.monotonic() - began)


def export_rate(url: str) -> tuple[float, int]:
    """(rows/s, rows) of one whole export, read to the last byte: by curl when installed (an
    httpx client reads JSON slower than one worker writes it), else by httpx."""
    if shutil.which("curl"):
        out = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-D", "-", "-w", "%{time_total}", url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows = int(re.search(r"x-total-count: (\d+)", out, re.IGNORECASE).group(1))  # type: ignore[union-attr]
        return rows / float(out.rsplit("\n", 1)[-1]), rows
    began = time.perf_counter()
    with httpx.stream("GET", url, timeout=300) as response:
        response.raise_for_status()
        rows = int(response.headers["x-total-count"])
        for _ in response.iter_raw(1 << 20):
            pass
    return rows / (time.perf_counter() - began), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("millpond.yml"))
    parser.add_argument("--mart", default="fct_order_lines")
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    port = free_port()
    api = start_api(args.config, port)
    base = f"http://127.0.0.1:{port}"
    try:
        page = f"{base}/marts/{args.mart}?limit=10"
        httpx.get(page, timeout=60).raise_for_status()  # warm: catalog, snapshot opened
        results: dict[str, float] = {}
        if shutil.which("wrk"):
            results["health req/s"] = with_wrk(f"{base}/health", args.seconds, 8)
            results["page req/s"] = with_wrk(page, args.seconds, 8)
        else:
            results["health req/s"] = with_threads([f"{base}/health"], args.seconds, 4)
            results["page req/s"] = with_threads([page], args.seconds, 4)
        pages = [f"{page}&offset={10 * i}" for i in range(5000)]
        results["page req/s, many offsets (httpx)"] = with_threads(pages, args.seconds, 4)
        for fmt in ("json", "csv", "arrow"):
            export = f"{base}/marts/{args.mart}?limit=1000000&format={fmt}"
            rate, rows = max(export_rate(export) for _ in range(2))  # the better of two
            results[f"{fmt} rows/s"] = rate
        print(f"{args.mart}: {rows} rows, one uvicorn worker")
        for name, value in results.items():
            goal = GOALS.get(name)
            ratio = f"  ({value / goal:.2f}x the goal of {goal:,})" if goal else ""
            print(f"  {name:36s} {value:>12,.0f}{ratio}")
    finally:
        api.terminate()
        api.wait(10)


if __name__ == "__main__":
    main()
