"""Smoke test of ``onair bench chat --direct``: tiny numbers, every key in the JSON line (no speed)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_chat_direct_smoke(valkey_url: str, nats_url: str, kafka_bootstrap: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "onair.cli.main",
        "bench",
        "chat",
        "--direct",
        "--viewers",
        "20",
        "--rate",
        "10",
        "--seconds",
        "1",
        "--client-procs",
        "1",
        "--sample-every",
        "1",
        "--followers",
        "3",
        "--golives",
        "2",
        "--valkey-url",
        valkey_url,
        "--nats-url",
        nats_url,
        "--kafka-bootstrap",
        kafka_bootstrap,
        "--json",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["scale_viewers"] == 20 and result["messages"] == 10
    assert result["lost"] == 0 and result["delivered"] == 200 and result["post_errors"] == 0
    assert result["repeated"] == 0 and result["gap_events"] == 0
    for key in ("scale_p50_ms", "scale_p99_ms", "bytes_per_viewer", "notify_p99_ms"):
        assert isinstance(result[key], int | float), key
    assert result["notify_received"] == result["notify_expected"] == 6


def test_bench_chat_needs_one_target() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "onair.cli.main", "bench", "chat", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "--direct" in proc.stderr and "--gateway-url" in proc.stderr
