"""The sampling profiler finds a known hot function; the uploader survives failures."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from onair.pgo import pprof
from onair.pgo.profiler import ProfileUploader, Sampler


def burn_cpu_here(cpu_seconds: float) -> int:
    """Burn this much CPU time of this thread (not wall time: the machine may be busy)."""
    end = time.thread_time() + cpu_seconds
    x = 0
    while time.thread_time() < end:
        for i in range(2000):
            x += i * i
    return x


def sleepy_thread(stop: threading.Event) -> None:
    stop.wait()


@pytest.mark.parametrize("clock", ["cpu", "wall"])
def test_profile_contains_the_hot_function(clock: str) -> None:
    stop = threading.Event()
    idle = threading.Thread(target=sleepy_thread, args=(stop,), daemon=True)
    idle.start()
    worker = threading.Thread(target=burn_cpu_here, args=(0.8,))
    sampler = Sampler(hz=100, clock=clock)  # type: ignore[arg-type]
    sampler.start()
    worker.start()
    worker.join()
    profile = sampler.stop()
    stop.set()
    data = pprof.dumps(profile)
    parsed = pprof.loads(data)  # valid, index-checked pprof
    assert pprof.sample_types(parsed) == [("samples", "count"), (clock, "nanoseconds")]
    totals = pprof.function_totals(parsed, 1)
    hot = totals["burn_cpu_here"]
    assert hot.flat > 0.4e9  # the worker's 0.8 s, give or take the first and last tick
    if clock == "cpu":
        # Idle threads cost nothing in a CPU profile.
        assert "sleepy_thread" not in totals
        assert pprof.top_functions(parsed, 1, 1)[0].name == "burn_cpu_here"
    else:
        assert totals["sleepy_thread"].cum > 0.4e9
    assert parsed.duration_nanos >= 0.8e9 and parsed.period == 10_000_000
    assert sampler.ticks > 30
    # The sampler's own cost per tick stays small (generous bound: CI machines are noisy).
    assert sampler.busy_ns / sampler.ticks < 2_000_000


def test_sampler_validates_its_arguments() -> None:
    with pytest.raises(ValueError):
        Sampler(hz=0)
    with pytest.raises(ValueError):
        Sampler(clock="gpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ProfileUploader(lambda d: asyncio.sleep(0), interval_s=1, duration_s=2)


async def test_uploader_counts_errors_and_keeps_going() -> None:
    got: list[bytes] = []
    calls = 0
    done = asyncio.Event()

    async def flaky(data: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls % 2 == 1:
            raise ConnectionError("profstore down")
        got.append(data)
        if len(got) >= 2:
            done.set()

    up = ProfileUploader(flaky, interval_s=0.12, duration_s=0.1, jitter=0.0)
    up.start()
    await asyncio.wait_for(done.wait(), 10)
    await up.stop()
    assert up.uploaded >= 2 and up.errors >= 2
    assert all(pprof.loads(d).sample_type for d in got)
