"""What sharing anonymous pages buys the BFF: one composition per page for concurrent anonymous
requests (single-flight), and a one-second cache of it, against composing every request.

* upstreams: one raw ASGI app in a process of its own standing in for liveinfo, chat, wallet and
  search (canned bodies of the documented shapes, each answer after ``--upstream-ms``), counting
  calls (``GET /_calls``);
* the BFF: ``onair serve bff`` as a process, started once per variant with
  ``ONAIR_BFF_ANONYMOUS_SHARE`` / ``ONAIR_BFF_ANONYMOUS_CACHE_S``;
* load: this process, aiohttp, ``--concurrency`` anonymous clients in a closed loop on one
  channel page (``/bff/web/live/<c>``) for ``--seconds``.

``python -m onair.bench.bff --concurrency 32 --seconds 5`` prints a line per variant and a JSON
line last: per variant ``pages_per_s``, ``p50_ms``, ``p99_ms``, ``upstream_calls_per_page``.
Figures in docs/bff.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from starlette.types import Receive, Scope, Send

VIEW = {
    "channel": "alice",
    "title": "Speedruns all night",
    "tags": ["speedrun", "retro"],
    "adult": False,
    "chat_mode": "open",
    "visibility": "public",
    "status": "live",
    "session_id": "s1",
    "started_at": "2026-12-01T10:00:00.000000Z",
    "ended_at": None,
    "end_reason": None,
    "source": {"height": 1080, "fps": 60, "codec": "h264", "bitrate_kbps": 6000},
    "renditions": [{"name": "1080p", "height": 1080, "fps": 60, "bitrate_kbps": 6000}],
    "viewers": 42,
    "version": 7,
    "updated_at": "2026-12-01T10:00:00.000000Z",
}
MESSAGES = [
    {
        "type": "message",
        "id": n,
        "n": n,
        "ts": 1_700_000_000_000 + n,
        "user": "v",
        "user_id": "u",
        "text": f"hi {n}",
    }
    for n in range(1, 51)
]
BODIES: dict[str, Any] = {
    "/live/alice": VIEW,
    "/chat/alice/recent": {"channel": "alice", "messages": MESSAGES, "last_n": 50},
    "/chat/alice/stats": {
        "channel": "alice",
        "live": True,
        "chat_mode": "open",
        "viewers_here": 1,
        "viewers_total": 42,
        "processes": 1,
        "messages_per_min": 10,
        "last_n": 50,
    },
    "/wallet/top-donors/alice": {
        "channel": "alice",
        "donors": [{"donor": "d", "amount": 100, "donations": 1}],
    },
    "/search": {
        "items": [{"channel": "bob", "title": "b", "tags": ["retro"], "renditions": [], "started_at": None}]
    },
    "/.well-known/identity-jwks.json": {"keys": []},
}


class Upstreams:
    """The four upstreams in one raw ASGI app; ``calls`` counts the API calls answered."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.calls = 0
        self.encoded = {path: json.dumps(body).encode() for path, body in BODIES.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = self.encoded.get(scope["path"])
        if scope["path"] == "/_calls":
            body = str(self.calls).encode()
        elif not scope["path"].startswith("/.well-known/"):
            self.calls += 1
            await asyncio.sleep(self.delay_s)
        status = 200 if body is not None else 404
        body = body or b'{"error":"not_found","detail":"no"}'
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _calls(upstream_url: str) -> int:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(f"{upstream_url}/_calls") as resp:
        return int(await resp.text())


async def _load(url: str, concurrency: int, seconds: float) -> tuple[list[float], int]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                started = time.perf_counter()
                async with http.get(url) as resp:
                    body = await resp.read()
                if resp.status != 200 or b'"degraded":[]' not in body:
                    errors += 1
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, errors


async def _variant(
    name: str, env: dict[str, str], upstream_url: str, args: argparse.Namespace
) -> dict[str, Any]:
    from onair.fleet import Fleet, Member

    with tempfile.TemporaryDirectory(prefix="onair-bench-bff-") as root:
        extra = {
            **{f"ONAIR_{u.upper()}_URL": upstream_url for u in ("liveinfo", "chat", "wallet", "search")},
            "ONAIR_IDENTITY_JWKS_URL": f"{upstream_url}/.well-known/identity-jwks.json",
            "ONAIR_LOG_LEVEL": "WARNING",  # the BFF logs no events
            "ONAIR_PROFILING": "false",
            # long deadlines: this measures throughput, not degradation
            **{f"ONAIR_BFF_{u}_TIMEOUT_S": "10" for u in ("LIVEINFO", "CHAT", "WALLET", "SEARCH")},
            **env,
        }
        fleet = Fleet(Path(root), [Member("bff")], extra_env={"bff": extra})
        try:
            await asyncio.to_thread(fleet.start)
            url = f"{fleet.url('bff')}/bff/web/live/alice"
            await _load(url, args.concurrency, 1.0)  # warm up
            calls_before = await _calls(upstream_url)
            latencies, errors = await _load(url, args.concurrency, args.seconds)
            calls = await _calls(upstream_url) - calls_before
        finally:
            await asyncio.to_thread(fleet.stop_all)
    latencies.sort()
    result = {
        "variant": name,
        "pages_per_s": round(len(latencies) / args.seconds, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 2),
        "upstream_calls_per_page": round(calls / max(1, len(latencies)), 3),
        "errors_or_degraded": errors,
    }
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


def _wait_for_port(port: int, timeout_s: float = 30.0) -> None:
    from onair.devstack.probes import port_in_use

    deadline = time.monotonic() + timeout_s
    while not port_in_use(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the upstreams did not listen on {port}")
        time.sleep(0.05)


def _serve_upstreams(port: int, delay_ms: float) -> None:
    import uvicorn

    uvicorn.run(Upstreams(delay_ms / 1000), host="127.0.0.1", port=port, log_level="error", access_log=False)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from onair.devstack.probes import free_port

    port = free_port()
    upstream = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "onair.bench.bff",
        "--serve-upstreams",
        str(port),
        "--upstream-ms",
        str(args.upstream_ms),
    )
    upstream_url = f"http://127.0.0.1:{port}"
    each = {"ONAIR_BFF_ANONYMOUS_SHARE": "false"}
    variants = {
        # every request composes its own page (what a signed-in page costs), per HTTP client
        "compose_each_httpx": {**each, "ONAIR_BFF_HTTP_CLIENT": "httpx"},
        "compose_each_aiohttp": {**each, "ONAIR_BFF_HTTP_CLIENT": "aiohttp"},
        # anonymous pages shared: single-flight alone, then with the 1 s cache (the default)
        "single_flight": {"ONAIR_BFF_ANONYMOUS_SHARE": "true", "ONAIR_BFF_ANONYMOUS_CACHE_S": "0"},
        "single_flight_cache_1s": {"ONAIR_BFF_ANONYMOUS_SHARE": "true", "ONAIR_BFF_ANONYMOUS_CACHE_S": "1"},
    }
    try:
        await asyncio.to_thread(_wait_for_port, port)
        results = [await _variant(n, e, upstream_url, args) for n, e in variants.items()]
    finally:
        upstream.terminate()
        await upstream.wait()
    return {
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "upstream_ms": args.upstream_ms,
        "load_average": round(os.getloadavg()[0], 2),
        "variants": results,
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--upstream-ms", type=float, default=2.0)
    parser.add_argument("--serve-upstreams", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstreams:
        _serve_upstreams(args.serve_upstreams, args.upstream_ms)
        return
    print(json.dumps(asyncio.run(main(args))))


if __name__ == "__main__":
    cli()
