"""`python bench/api_load.py URL N C`: closed-loop load, C clients, N requests; req/s and p50/p99."""

import asyncio, sys, time, statistics
import httpx


async def main(url: str, n: int, c: int) -> None:
    lat: list[float] = []
    errors = 0
    async with httpx.AsyncClient(timeout=30) as client:
        q = iter(range(n))

        async def worker() -> None:
            nonlocal errors
            for _ in q:
                t = time.perf_counter()
                r = await client.get(url)
                lat.append(time.perf_counter() - t)
                errors += r.status_code != 200

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(c)))
        wall = time.perf_counter() - t0
    lat.sort()
    p = lambda x: lat[min(len(lat) - 1, int(x * len(lat)))] * 1000
    print(
        f"{url}: {n / wall:.0f} req/s, p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, errors {errors}"
    )


asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
