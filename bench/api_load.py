"""`python bench/api_load.py URL N C`: closed-loop load on one endpoint.

C concurrent clients send N requests in all; prints req/s, p50 and p99 latency and the number
of non-200 answers. Run the API with one worker first, e.g.
`MILLPOND_CONFIG=$PWD/millpond.yml .venv/bin/uvicorn serve.app:app --port 8765`.
"""

from __future__ import annotations

import asyncio
import sys
import time

import httpx


async def main(url: str, n: int, c: int) -> None:
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(timeout=30) as client:
        queue = iter(range(n))

        async def worker() -> None:
            nonlocal errors
            for _ in queue:
                started = time.perf_counter()
                response = await client.get(url)
                latencies.append(time.perf_counter() - started)
                errors += response.status_code != 200

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(c)))
        wall = time.perf_counter() - began
    latencies.sort()

    def percentile(share: float) -> float:
        return latencies[min(len(latencies) - 1, int(share * len(latencies)))] * 1000

    print(
        f"{url}: {n / wall:.0f} req/s, p50 {percentile(0.5):.1f} ms, "
        f"p99 {percentile(0.99):.1f} ms, errors {errors}"
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
