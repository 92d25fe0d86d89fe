"""The gateway benchmark behind ``onair bench gateway``: one route, direct and through the gateway.

Processes (all on loopback):

* **upstream** — a service on the skeleton (``python -m onair.bench.gateway_harness upstream``):
  ``GET /live/bench`` answers a small JSON body; it also publishes the auth JWKS the gateway
  verifies user tokens with (the signing key is the bench's own);
* **gateway** — ``onair serve gateway`` as deployed: JWT verification (a real EdDSA access
  token, so the verified-token cache and the revocation check through the near cache are on the
  path), identity signing per request, the per-IP and per-user rate limits (limits far above the
  load, so every request is counted and none refused), the breaker, the access log (to a file);
* **Valkey** from the devstack (the gateway's revocation near cache and rate-limit syncs);
* **load generator** — its own process (:mod:`onair.bench.loadgen`), aiohttp on uvloop, ``concurrency``
  keep-alive connections in a closed loop, ``seconds`` per phase after a warm-up.

Each round runs four phases: ``direct`` (the upstream's URL, no token) and ``gateway`` (the
gateway's URL, ``Authorization: Bearer``) at ``concurrency`` connections for the throughput
(``*_rps``), then both again at ``latency_concurrency`` (1) for the latency the hop adds
(``*_p50_ms``, ``overhead_p50_ms`` = gateway p50 minus direct p50, same for p99): at a concurrency
that saturates a process, latency is queueing (``concurrency / rps``), not the hop, and is
reported apart (``loaded``). Each pair runs at the same concurrency, phases alternate so a change
in the machine's load hits both paths, and every figure is the median over ``rounds``.

``valkey_cmds_per_request`` is every command Valkey executed during the gateway phases
(``total_commands_processed``, which also counts the commands run inside the rate limiter's
script; the bench's own ``INFO`` calls are subtracted) divided by the requests answered.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from onair.bench import loadgen

TARGETS = {"gateway_rps_ratio": 0.5, "overhead_p50_ms": 1.0, "valkey_cmds_per_request": 0.05}
AUTH_ISSUER = "onair-auth"
AUTH_AUDIENCE = "onair"


# -- the upstream ----------------------------------------------------------------------------------
def upstream_app(key_file: Path) -> Any:
    from fastapi import APIRouter
    from fastapi.responses import Response

    from onair.auth import SigningKey, jwks_document
    from onair.service import RuntimeSettings, ServiceSpec, create_service_app

    key = SigningKey.from_pem(key_file.read_bytes())
    jwks = json.dumps(jwks_document([key])).encode()
    body = json.dumps(
        {"channel": "bench", "title": "a channel on air", "viewers": 1234, "live": True}
    ).encode()
    router = APIRouter()

    @router.get("/live/bench")
    async def bench() -> Response:
        return Response(body, media_type="application/json")

    @router.get("/.well-known/jwks.json")
    async def keys() -> Response:
        return Response(jwks, media_type="application/json")

    spec = ServiceSpec(name="benchup", identity=False)
    return create_service_app(spec, [router], settings=RuntimeSettings(log_level="WARNING"))


# -- the run ---------------------------------------------------------------------------------------
def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115 - owned by the process
    return subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 60.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not ready after {timeout_s} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _commands(valkey_url: str) -> tuple[int, int]:
    """(total commands processed, EVALSHA calls) of the Valkey server."""
    import valkey

    client = valkey.Valkey.from_url(valkey_url)
    try:
        stats: dict[str, Any] = client.info("stats")  # type: ignore[assignment]
        commandstats: dict[str, Any] = client.info("commandstats")  # type: ignore[assignment]
        total = int(stats["total_commands_processed"])
        evalsha = int(commandstats.get("cmdstat_evalsha", {}).get("calls", 0))
    finally:
        client.close()
    return total, evalsha


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process used so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _phase(
    url: str, headers: dict[str, str], concurrency: int, seconds: float, warmup_s: float
) -> dict[str, Any]:
    return loadgen.measure(
        [url], headers=headers, concurrency=concurrency, seconds=seconds, warmup_s=warmup_s
    )


def run(
    *,
    valkey_url: str,
    concurrency: int = 16,
    latency_concurrency: int = 1,
    seconds: float = 5.0,
    rounds: int = 3,
    warmup_s: float = 1.0,
    access_log: bool = True,
    note: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    from onair.auth import SigningKey

    with tempfile.TemporaryDirectory(prefix="onair-bench-gateway-") as tmp_name:
        tmp = Path(tmp_name)
        auth_key = SigningKey.generate("EdDSA")
        key_file = tmp / "auth-key.pem"
        key_file.write_bytes(auth_key.private_pem())
        up_port, gw_port = _free_port(), _free_port()
        upstream = f"http://127.0.0.1:{up_port}"
        gateway = f"http://127.0.0.1:{gw_port}"
        quiet = {"ONAIR_PROFILING": "false", "PYTHONUNBUFFERED": "1"}
        procs: list[subprocess.Popen[bytes]] = []
        try:
            note("starting the upstream and the gateway")
            procs.append(
                _spawn(
                    [
                        sys.executable,
                        "-m",
                        "onair.bench.gateway_harness",
                        "upstream",
                        "--port",
                        str(up_port),
                        "--key-file",
                        str(key_file),
                    ],
                    {**quiet, "ONAIR_LOG_LEVEL": "WARNING"},
                    tmp / "upstream.log",
                )
            )
            gateway_env = {
                **quiet,
                "ONAIR_VALKEY_URL": valkey_url,
                "ONAIR_VALKEY_NAMESPACE": f"bench{uuid.uuid4().hex[:8]}",
                "ONAIR_AUTH_JWKS_URL": f"{upstream}/.well-known/jwks.json",
                "ONAIR_AUTH_URL": upstream,
                "ONAIR_LIVEINFO_URL": upstream,
                "ONAIR_GATEWAY_STATE_DIR": str(tmp / "gateway"),
                "ONAIR_GATEWAY_RATE_LIMIT_PER_USER": "1000000000",
                "ONAIR_GATEWAY_RATE_LIMIT_PER_IP": "1000000000",
                "ONAIR_LOG_LEVEL": "INFO" if access_log else "WARNING",
                "ONAIR_SPOOL_DIR": str(tmp / "spool"),
            }
            onair = str(Path(sys.executable).parent / "onair")
            procs.append(
                _spawn([onair, "serve", "gateway", "--port", str(gw_port)], gateway_env, tmp / "gateway.log")
            )
            _wait_ready(f"{upstream}/healthz", procs[0], tmp / "upstream.log")
            _wait_ready(f"{gateway}/readyz", procs[1], tmp / "gateway.log")

            now = int(time.time())
            token = auth_key.sign(
                {
                    "iss": AUTH_ISSUER,
                    "aud": AUTH_AUDIENCE,
                    "sub": "u-bench",
                    "name": "bench",
                    "roles": ["viewer"],
                    "iat": now,
                    "exp": now + 900,
                    "jti": uuid.uuid4().hex,
                }
            )
            direct: tuple[str, dict[str, str]] = (f"{upstream}/live/bench", {})
            through = (f"{gateway}/live/bench", {"Authorization": f"Bearer {token}"})
            load_before = os.getloadavg()
            runs: dict[str, list[dict[str, Any]]] = {
                "direct": [],
                "gateway": [],
                "direct_lat": [],
                "gateway_lat": [],
            }
            phases = [
                ("direct", direct, concurrency),
                ("gateway", through, concurrency),
                ("direct_lat", direct, latency_concurrency),
                ("gateway_lat", through, latency_concurrency),
            ]
            for i in range(rounds):
                for name, (url, headers), conns in phases:
                    note(f"round {i + 1}/{rounds}: {name}, {conns} connections, {seconds:g} s")
                    before = _commands(valkey_url) if name.startswith("gateway") else None
                    cpu_before = {p.pid: _cpu_s(p.pid) for p in procs}
                    result = _phase(url, headers, conns, seconds, warmup_s)
                    cpu = {p.pid: _cpu_s(p.pid) - cpu_before[p.pid] for p in procs}
                    # the phase's CPU includes its warm-up: per request of warm-up + measure
                    total = result["requests"] * (seconds + warmup_s) / seconds
                    result["upstream_cpu_us"] = cpu[procs[0].pid] / total * 1e6 if total else 0.0
                    result["gateway_cpu_us"] = cpu[procs[1].pid] / total * 1e6 if total else 0.0
                    if before is not None:
                        after = _commands(valkey_url)
                        # the second _commands call's INFO runs are in `after`: 2 per call
                        result["valkey_cmds"] = after[0] - before[0] - 2
                        result["valkey_evalsha"] = after[1] - before[1]
                    runs[name].append(result)
            load_after = os.getloadavg()
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return summarize(
        runs, concurrency, latency_concurrency, seconds, rounds, load_before, load_after, access_log
    )


def summarize(
    runs: dict[str, list[dict[str, Any]]],
    concurrency: int,
    latency_concurrency: int,
    seconds: float,
    rounds: int,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
    access_log: bool,
) -> dict[str, Any]:
    def med(name: str, key: str) -> float:
        return round(float(statistics.median(r[key] for r in runs[name])), 3)

    def overhead(key: str, suffix: str) -> float:
        pairs = zip(runs["gateway" + suffix], runs["direct" + suffix], strict=True)
        return round(float(statistics.median(g[key] - d[key] for g, d in pairs)), 3)

    gateway_runs = runs["gateway"] + runs["gateway_lat"]
    gateway_requests = sum(r["requests"] for r in gateway_runs)
    cmds = sum(r.get("valkey_cmds", 0) for r in gateway_runs)
    evalsha = sum(r.get("valkey_evalsha", 0) for r in gateway_runs)
    everything = [r for v in runs.values() for r in v]
    out: dict[str, Any] = {
        # throughput: both paths at `concurrency` connections
        "direct_rps": round(med("direct", "rps"), 1),
        "gateway_rps": round(med("gateway", "rps"), 1),
        # latency: both paths at `latency_concurrency` connections (the hop, not the queue)
        "direct_p50_ms": med("direct_lat", "p50_ms"),
        "gateway_p50_ms": med("gateway_lat", "p50_ms"),
        "direct_p99_ms": med("direct_lat", "p99_ms"),
        "gateway_p99_ms": med("gateway_lat", "p99_ms"),
        "overhead_p50_ms": overhead("p50_ms", "_lat"),
        "overhead_p99_ms": overhead("p99_ms", "_lat"),
        "valkey_cmds_per_request": round(cmds / gateway_requests, 5) if gateway_requests else None,
        "concurrency": concurrency,
        "latency_concurrency": latency_concurrency,
        "seconds": seconds,
        "rounds": rounds,
        "access_log": access_log,
        # the latency at the throughput concurrency (mostly queueing once a process saturates)
        "loaded": {
            "direct_p50_ms": med("direct", "p50_ms"),
            "gateway_p50_ms": med("gateway", "p50_ms"),
            "direct_p99_ms": med("direct", "p99_ms"),
            "gateway_p99_ms": med("gateway", "p99_ms"),
        },
        "valkey_evalsha_per_request": round(evalsha / gateway_requests, 5) if gateway_requests else None,
        "gateway_requests": gateway_requests,
        # CPU per request at the throughput concurrency: the gateway process, and the upstream
        "gateway_cpu_us_per_request": round(med("gateway", "gateway_cpu_us"), 1),
        "upstream_cpu_us_per_request": round(med("direct", "upstream_cpu_us"), 1),
        "non_200": sum(n for r in everything for s, n in r["statuses"].items() if s != "200"),
        "errors": sum(r["errors"] for r in everything),
        "rps_ranges": {
            k: [round(min(r["rps"] for r in v), 1), round(max(r["rps"] for r in v), 1)]
            for k, v in runs.items()
        },
        "load_average": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
    }
    out["gateway_rps_ratio"] = round(out["gateway_rps"] / out["direct_rps"], 3) if out["direct_rps"] else None
    out["targets_met"] = {
        "gateway_rps >= 0.5 x direct_rps": bool(out["gateway_rps_ratio"] and out["gateway_rps_ratio"] >= 0.5),
        "overhead_p50_ms <= 1": out["overhead_p50_ms"] <= TARGETS["overhead_p50_ms"],
        "valkey_cmds_per_request <= 0.05": out["valkey_cmds_per_request"] is not None
        and out["valkey_cmds_per_request"] <= TARGETS["valkey_cmds_per_request"],
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="helper processes of onair bench gateway")
    sub = parser.add_subparsers(dest="role", required=True)
    up = sub.add_parser("upstream")
    up.add_argument("--port", type=int, required=True)
    up.add_argument("--key-file", type=Path, required=True)
    args = parser.parse_args()
    if args.role == "upstream":
        import uvicorn

        uvicorn.run(
            upstream_app(args.key_file),
            host="127.0.0.1",
            port=args.port,
            log_config=None,
            log_level="warning",
            access_log=False,
        )


if __name__ == "__main__":
    main()
