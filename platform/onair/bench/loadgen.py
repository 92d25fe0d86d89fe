"""An HTTP load generator in its own process, for the benchmarks (not Locust: one process, no UI).

``python -m onair.bench.loadgen --url URL [--url URL ...] [--zipf 1.1] [--concurrency 16]
[--seconds 5] [--rate 0] [--warmup 1] [--headers JSON]`` prints one JSON line: ``requests``,
``rps``, ``p50_ms``, ``p99_ms``, ``statuses`` and ``errors``. ``concurrency`` keep-alive
connections (aiohttp on uvloop) issue GETs in a closed loop, or paced to ``rate`` requests/s in
all; with several URLs each request picks one, uniformly or by a Zipf law over their order.
:func:`measure` runs it from a benchmark and returns that dict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from itertools import accumulate
from typing import Any


async def load(
    urls: Sequence[str],
    *,
    headers: dict[str, str] | None = None,
    concurrency: int = 16,
    seconds: float = 5.0,
    rate: float = 0.0,
    warmup_s: float = 1.0,
    zipf: float = 0.0,
) -> dict[str, Any]:
    """Drive ``urls`` (see the module docstring) and return the figures."""
    import aiohttp

    rng = random.Random(7)
    cumulative = list(accumulate(1.0 / (i + 1) ** zipf for i in range(len(urls)))) if zipf else None
    interval = concurrency / rate if rate > 0 else 0.0
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency, ttl_dns_cache=None)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False, headers=headers) as session:

        async def worker(until: float, record: bool) -> None:
            nonlocal errors
            perf = time.perf_counter
            next_at = perf() + rng.random() * interval
            while True:
                now = perf()
                if now >= until:
                    return
                if interval:
                    if next_at > now:
                        await asyncio.sleep(next_at - now)
                    next_at += interval
                url = urls[0] if len(urls) == 1 else rng.choices(urls, cum_weights=cumulative)[0]
                start = perf()
                try:
                    async with session.get(url) as resp:
                        await resp.read()
                        status = resp.status
                except aiohttp.ClientError:
                    errors += record
                    continue
                if record:
                    latencies.append(perf() - start)
                    statuses[status] = statuses.get(status, 0) + 1

        if warmup_s > 0:
            began = time.perf_counter()
            await asyncio.gather(*(worker(began + warmup_s, False) for _ in range(concurrency)))
        began = time.perf_counter()
        await asyncio.gather(*(worker(began + seconds, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "seconds": elapsed,
        "rps": n / elapsed if elapsed else 0.0,
        "p50_ms": latencies[n // 2] * 1000 if n else 0.0,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": errors,
    }


def _argv(
    urls: Sequence[str],
    headers: dict[str, str] | None,
    concurrency: int,
    seconds: float,
    rate: float,
    warmup_s: float,
    zipf: float,
) -> list[str]:
    argv = [sys.executable, "-m", "onair.bench.loadgen"]
    for url in urls:
        argv += ["--url", url]
    argv += ["--headers", json.dumps(headers or {}), "--concurrency", str(concurrency)]
    argv += ["--seconds", str(seconds), "--rate", str(rate), "--warmup", str(warmup_s), "--zipf", str(zipf)]
    return argv


def start(
    urls: Sequence[str],
    *,
    headers: dict[str, str] | None = None,
    concurrency: int = 16,
    seconds: float = 5.0,
    rate: float = 0.0,
    warmup_s: float = 1.0,
    zipf: float = 0.0,
) -> subprocess.Popen[str]:
    """Start the generator in its own process (read its result with :func:`result`)."""
    argv = _argv(urls, headers, concurrency, seconds, rate, warmup_s, zipf)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen[str], timeout_s: float) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"the load generator exited with {proc.returncode}")
    return dict(json.loads(out.strip().splitlines()[-1]))


def measure(urls: Sequence[str], **options: Any) -> dict[str, Any]:
    """Run the generator in its own process until it is done; its figures."""
    proc = start(urls, **options)
    return result(proc, float(options.get("seconds", 5.0)) + float(options.get("warmup_s", 1.0)) + 120)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m onair.bench.loadgen", description=__doc__)
    parser.add_argument("--url", action="append", required=True, help="a URL to GET (repeat for several)")
    parser.add_argument("--headers", default="{}", help="request headers as a JSON object")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s in all (0: closed loop)")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--zipf", type=float, default=0.0, help="Zipf exponent over the URLs (0: uniform)")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    figures = asyncio.run(
        load(
            args.url,
            headers=json.loads(args.headers),
            concurrency=args.concurrency,
            seconds=args.seconds,
            rate=args.rate,
            warmup_s=args.warmup,
            zipf=args.zipf,
        )
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
