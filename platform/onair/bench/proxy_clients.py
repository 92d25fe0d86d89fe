"""Which HTTP client should the gateway's proxy hop use? httpx against aiohttp, same load.

The gateway forwards every request with a pooled HTTP/1.1 client. httpx's connection pool is
known to slow down under concurrency, so this script measures the hop with both, as the gateway
uses them (keep-alive pool, request and response bodies streamed, no decompression):

* an upstream process: uvicorn + a raw ASGI app answering a small JSON body;
* a proxy process per client: uvicorn + a raw ASGI app forwarding method, path, headers and a
  streamed body to the upstream and streaming the answer back;
* this process is the load generator (aiohttp, ``--concurrency`` connections, closed loop):
  ``direct`` (upstream), then ``httpx`` and ``aiohttp`` (through the proxy), each ``--rounds``
  times in turn so a change in the machine's load hits every variant.

``python -m onair.bench.proxy_clients --concurrency 16 --seconds 5`` prints a table and a JSON
line. The figures and the decision are in docs/gateway.md ("Which HTTP client").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.types import Receive, Scope, Send

BODY = b'{"ok":true,"items":[1,2,3],"title":"a small JSON answer of about a hundred bytes...."}'
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)


# -- the upstream --------------------------------------------------------------------------------
async def upstream_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the request body, if any
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


# -- the proxies ---------------------------------------------------------------------------------
async def _body(receive: Receive) -> AsyncIterator[bytes]:
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
        chunk = message.get("body", b"")
        if chunk:
            yield chunk


def _has_body(scope: Scope) -> bool:
    return any(name in (b"content-length", b"transfer-encoding") for name, _ in scope["headers"])


def httpx_proxy(upstream: str) -> Any:
    import httpx

    client = httpx.AsyncClient(
        base_url=upstream,
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
        timeout=httpx.Timeout(10.0),
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = [(k, v) for k, v in scope["headers"] if k not in HOP_BY_HOP and k != b"host"]
        request = client.build_request(
            scope["method"],
            scope["raw_path"].decode("latin-1"),
            headers=headers,
            content=_body(receive) if _has_body(scope) else None,
        )
        response = await client.send(request, stream=True)
        try:
            out = [(k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP]
            await send({"type": "http.response.start", "status": response.status_code, "headers": out})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

    return app


def aiohttp_proxy(upstream: str) -> Any:
    import aiohttp

    session: aiohttp.ClientSession | None = None

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal session
        if scope["type"] != "http":
            return
        if session is None:
            session = aiohttp.ClientSession(
                upstream,
                connector=aiohttp.TCPConnector(limit=256, limit_per_host=256, ttl_dns_cache=None),
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=10.0),
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            )
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k not in HOP_BY_HOP and k != b"host"
        ]
        async with session.request(
            scope["method"],
            scope["raw_path"].decode("latin-1"),
            headers=headers,
            data=_body(receive) if _has_body(scope) else None,
            allow_redirects=False,
        ) as response:
            out: list[tuple[bytes, bytes]] = [
                (k, v) for k, v in response.raw_headers if k.lower() not in HOP_BY_HOP
            ]
            await send({"type": "http.response.start", "status": response.status, "headers": out})
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    return app


def _serve(app: Any, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- the load generator --------------------------------------------------------------------------
async def _load(url: str, concurrency: int, seconds: float, warmup_s: float = 1.0) -> dict[str, float]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency, ttl_dns_cache=None)
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:

        async def worker(until: float, record: bool) -> None:
            nonlocal errors
            while True:
                start = time.perf_counter()
                if start >= until:
                    return
                try:
                    async with session.get(url) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except aiohttp.ClientError:
                    ok = False
                if record:
                    if ok:
                        latencies.append(time.perf_counter() - start)
                    else:
                        errors += 1

        now = time.perf_counter()
        await asyncio.gather(*(worker(now + warmup_s, False) for _ in range(concurrency)))
        began = time.perf_counter()
        await asyncio.gather(*(worker(began + seconds, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    n = len(latencies)
    return {
        "rps": round(n / elapsed, 1),
        "p50_ms": round(latencies[n // 2] * 1000, 3) if n else 0.0,
        "p99_ms": round(latencies[min(n - 1, int(n * 0.99))] * 1000, 3) if n else 0.0,
        "errors": errors,
    }


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "onair.bench.proxy_clients", *args])


async def _wait_up(url: str, timeout_s: float = 30.0) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up")
            await asyncio.sleep(0.1)


def run(concurrency: int, seconds: float, rounds: int) -> dict[str, Any]:
    up_port, httpx_port, aio_port = _free_port(), _free_port(), _free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    procs = [
        _spawn("upstream", "--port", str(up_port)),
        _spawn("proxy", "--client", "httpx", "--port", str(httpx_port), "--upstream", upstream),
        _spawn("proxy", "--client", "aiohttp", "--port", str(aio_port), "--upstream", upstream),
    ]
    targets = {
        "direct": f"{upstream}/x",
        "httpx": f"http://127.0.0.1:{httpx_port}/x",
        "aiohttp": f"http://127.0.0.1:{aio_port}/x",
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    try:
        for url in targets.values():
            asyncio.run(_wait_up(url))
        for _ in range(rounds):
            for name, url in targets.items():
                results[name].append(asyncio.run(_load(url, concurrency, seconds)))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
    summary: dict[str, Any] = {"concurrency": concurrency, "seconds": seconds, "rounds": rounds}
    for name, runs in results.items():
        summary[name] = {
            "rps": round(statistics.median(r["rps"] for r in runs), 1),
            "rps_range": [min(r["rps"] for r in runs), max(r["rps"] for r in runs)],
            "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 3),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 3),
            "errors": sum(int(r["errors"]) for r in runs),
        }
    for name in ("httpx", "aiohttp"):
        summary[name]["hop_p50_ms"] = round(summary[name]["p50_ms"] - summary["direct"]["p50_ms"], 3)
    summary["load_average"] = os.getloadavg()[0]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role")
    up = sub.add_parser("upstream")
    up.add_argument("--port", type=int, required=True)
    px = sub.add_parser("proxy")
    px.add_argument("--port", type=int, required=True)
    px.add_argument("--client", choices=("httpx", "aiohttp"), required=True)
    px.add_argument("--upstream", required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.role == "upstream":
        _serve(upstream_app, args.port)
    elif args.role == "proxy":
        proxy = httpx_proxy if args.client == "httpx" else aiohttp_proxy
        _serve(proxy(args.upstream), args.port)
    else:
        summary = run(args.concurrency, args.seconds, args.rounds)
        for name in ("direct", "httpx", "aiohttp"):
            s = summary[name]
            print(
                f"{name:8} {s['rps']:>9.1f} rps  p50 {s['p50_ms']:.3f} ms  p99 {s['p99_ms']:.3f} ms"
                f"  errors {s['errors']}",
                file=sys.stderr,
            )
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
