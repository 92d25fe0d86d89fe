"""Smoke test of ``onair bench fanout``: tiny numbers, the JSON line has every key (not a speed test)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_fanout_smoke(nats_url: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "onair.cli.main",
        "bench",
        "fanout",
        "--subscribers",
        "20",
        "--messages",
        "300",
        "--buffer",
        "16",
        "--clients",
        "10",
        "--rate",
        "100",
        "--seconds",
        "1",
        "--nats-url",
        nats_url,
        "--json",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    inproc, sse = result["inproc"], result["sse"]
    for key in ("fanoutlog_s", "queue_s", "speedup", "mem_ratio"):
        assert isinstance(inproc[key], int | float) and inproc[key] > 0, key
    assert inproc["complete"] is True and inproc["gaps"] == 0
    assert inproc["per_item"]["complete"] is True
    assert sse["lost"] == 0 and sse["deliveries"] == 10 * 100
    assert isinstance(sse["p99_ms"], int | float) and sse["p99_ms"] >= sse["p50_ms"] > 0
