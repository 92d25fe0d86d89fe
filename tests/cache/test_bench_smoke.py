"""``onair bench cache`` runs end to end with tiny numbers; the stale-read checker finds stale reads."""

import json
import subprocess
import sys
from array import array
from pathlib import Path

from onair.bench.cache_harness import count_stale

KEYS = {"valkey_cmds_per_1000_reads", "db_loads", "p50_us", "p99_us", "stale_reads"}


def test_bench_cache_prints_the_json_line(valkey_url: str) -> None:
    onair = Path(sys.executable).parent / "onair"
    args = ["--json", "--valkey-url", valkey_url, "--reads", "300", "--keys", "200", "--rate", "0"]
    proc = subprocess.run(
        [str(onair), "bench", "cache", *args], capture_output=True, text=True, timeout=240, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    data = json.loads(last)
    sf = "singleflight_db_loads_for_1000_concurrent_misses"
    assert set(data) == {"strategies", "invalidation_p99_ms", sf}
    assert set(data["strategies"]) == {"cache_aside", "valkey_builtin", "onair"}
    for figures in data["strategies"].values():
        assert set(figures) == KEYS
    assert data[sf] == 1
    assert data["strategies"]["cache_aside"]["valkey_cmds_per_1000_reads"] >= 1000  # one GET per read
    assert "single-flight" in proc.stdout


def _reads(*rows: tuple[int, int, int]) -> dict[str, array]:
    return {
        "keys": array("q", [r[0] for r in rows]),
        "starts": array("q", [r[1] for r in rows]),
        "versions": array("q", [r[2] for r in rows]),
    }


def test_stale_read_needs_an_acknowledged_and_delivered_write() -> None:
    writes = [(7, 2, 1_000, 2_000)]  # key 7 -> version 2, sent at 1000 ns, acknowledged at 2000
    inval = [(7, 3_000, True)]  # delivered to this process at 3000
    reader = _reads((7, 1_500, 1), (7, 2_500, 1), (7, 3_500, 1), (7, 3_600, 2), (8, 9_000, 1))
    reader["inval"] = inval  # type: ignore[assignment]
    stale, delays = count_stale(reader, writes, "onair")
    assert stale == 1  # only the read that started after delivery and still saw version 1
    assert delays == [0.001]  # 3000 - 2000 ns in ms
    # cache-aside has no local copy: delivered at the ack
    reader["inval"] = []  # type: ignore[assignment]
    stale, _ = count_stale(reader, writes, "cache_aside")
    assert stale == 2
