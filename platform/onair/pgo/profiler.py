"""A low-overhead sampling CPU profiler for Python services, emitting pprof; a periodic uploader.

:class:`Sampler` runs one daemon thread that wakes ``hz`` times a second, takes every thread's stack
with ``sys._current_frames()`` and counts identical stacks. Clock ``"cpu"`` (default) weighs each
thread's stack by the CPU time that thread used since the previous tick (per-thread CPU clocks, Linux)
and skips threads that used none, so idle threads cost nothing in the profile; ``"wall"`` counts every
thread every tick. The result is a pprof profile with Go's shape (``samples/count`` plus
``cpu/nanoseconds`` or ``wall/nanoseconds``), so the profstore merges it like any other.

:class:`ProfileUploader` is the ticker of the design: every ``interval`` (>= ``duration``, plus
jitter) it profiles for ``duration`` and hands the gzip bytes to a sink (HTTP to the profstore, or a
store directly). Failures are logged and counted, never raised into the service.

Overhead (see docs/pgo.md): the sampler's own cost is a few tens of microseconds per tick for a
handful of threads of depth ~30, i.e. well under 1% of one core at 100 Hz.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import random
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from types import CodeType, FrameType
from typing import Literal

from onair.logging import get_logger

# The message types only: onair.pgo.pprof would load numba (~65 MB) into every profiled service.
from onair.pgo._pb.profile_pb2 import Function, Line, Location, Profile, ValueType

log = get_logger("onair.pgo.profiler")

Clock = Literal["cpu", "wall"]
MAX_DEPTH = 128


def _gzip(profile: Profile) -> bytes:
    """``pprof.dumps``: serialised and gzip-compressed."""
    return gzip.compress(profile.SerializeToString(), compresslevel=6, mtime=0)


def _log(level: str, event: str, **fields: object) -> None:
    """Log without ever raising into the service (a closed stream must not stop the profiler)."""
    with contextlib.suppress(Exception):
        getattr(log, level)(event, **fields)


def _thread_cpu_ns(ident: int) -> int | None:
    try:
        return time.clock_gettime_ns(time.pthread_getcpuclockid(ident))
    except (OSError, AttributeError, OverflowError):
        return None


class Sampler:
    """Sample all threads' stacks ``hz`` times a second until :meth:`stop` returns the profile."""

    def __init__(self, hz: int = 100, clock: Clock = "cpu", *, max_depth: int = MAX_DEPTH) -> None:
        if not 1 <= hz <= 1000:
            raise ValueError("hz must be in [1, 1000]")
        if clock not in ("cpu", "wall"):
            raise ValueError("clock must be 'cpu' or 'wall'")
        if clock == "cpu" and not hasattr(time, "pthread_getcpuclockid"):
            raise ValueError("clock 'cpu' needs per-thread CPU clocks (Linux); use 'wall'")
        self.hz = hz
        self.clock: Clock = clock
        self.max_depth = max_depth
        self.period_ns = 1_000_000_000 // hz
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._counts: dict[tuple[tuple[CodeType, int], ...], list[int]] = {}
        self._start_ns = 0
        self._end_ns = 0
        self.ticks = 0
        self.busy_ns = 0  # time spent sampling (the profiler's own cost)

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("sampler already running")
        self._counts = {}
        self.ticks = self.busy_ns = 0
        self._stop.clear()
        self._start_ns = time.time_ns()
        self._thread = threading.Thread(target=self._run, name="onair-pgo-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> Profile:
        thread = self._thread
        if thread is None:
            raise RuntimeError("sampler not running")
        self._stop.set()
        thread.join()
        self._thread = None
        self._end_ns = time.time_ns()
        return self.profile()

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self.stop()

    # -- sampling -----------------------------------------------------------------------------------
    def _run(self) -> None:
        me = threading.get_ident()
        cpu = self.clock == "cpu"
        last_cpu: dict[int, int] = {}
        interval = 1.0 / self.hz
        next_t = time.monotonic()
        counts = self._counts
        max_depth = self.max_depth
        period = self.period_ns
        while not self._stop.is_set():
            next_t += interval
            delay = next_t - time.monotonic()
            if delay > 0:
                if self._stop.wait(delay):
                    break
            else:
                next_t = time.monotonic()  # fell behind (GIL held long): do not burst
            t0 = time.perf_counter_ns()
            frames = sys._current_frames()
            for ident, frame in frames.items():
                if ident == me:
                    continue
                if cpu:
                    now = _thread_cpu_ns(ident)
                    if now is None:
                        continue
                    before = last_cpu.get(ident)
                    last_cpu[ident] = now
                    weight = now - before if before is not None else 0
                    if weight <= 0:
                        continue
                else:
                    weight = period
                stack: list[tuple[CodeType, int]] = []
                f: FrameType | None = frame
                while f is not None and len(stack) < max_depth:
                    stack.append((f.f_code, f.f_lineno or 0))
                    f = f.f_back
                key = tuple(stack)
                cur = counts.get(key)
                if cur is None:
                    counts[key] = [1, weight]
                else:
                    cur[0] += 1
                    cur[1] += weight
            if cpu and len(last_cpu) > len(frames):  # forget threads that ended
                for ident in [i for i in last_cpu if i not in frames]:
                    del last_cpu[ident]
            del frames
            self.ticks += 1
            self.busy_ns += time.perf_counter_ns() - t0

    # -- output ---------------------------------------------------------------------------------------
    def profile(self) -> Profile:
        """The samples so far as a pprof profile (functions = code objects, locations = code+line)."""
        p = Profile()
        strings: dict[str, int] = {"": 0}

        def s(x: str) -> int:
            idx = strings.get(x)
            if idx is None:
                idx = strings[x] = len(strings)
            return idx

        functions: dict[CodeType, int] = {}
        locations: dict[tuple[CodeType, int], int] = {}
        for key, (count, weight) in list(self._counts.items()):
            ids = []
            for code, line in key:
                lid = locations.get((code, line))
                if lid is None:
                    fid = functions.get(code)
                    if fid is None:
                        fid = functions[code] = len(functions) + 1
                        name = getattr(code, "co_qualname", code.co_name)
                        p.function.append(
                            Function(
                                id=fid,
                                name=s(name),
                                system_name=s(code.co_name),
                                filename=s(code.co_filename),
                                start_line=code.co_firstlineno,
                            )
                        )
                    lid = locations[(code, line)] = len(locations) + 1
                    p.location.append(Location(id=lid, line=[Line(function_id=fid, line=line)]))
                ids.append(lid)
            p.sample.add(location_id=ids, value=[count, weight])
        kind = "cpu" if self.clock == "cpu" else "wall"
        p.sample_type.extend(
            [ValueType(type=s("samples"), unit=s("count")), ValueType(type=s(kind), unit=s("nanoseconds"))]
        )
        p.period_type.CopyFrom(ValueType(type=s(kind), unit=s("nanoseconds")))
        p.period = self.period_ns
        p.time_nanos = self._start_ns
        p.duration_nanos = max(0, (self._end_ns or time.time_ns()) - self._start_ns)
        p.comment.append(s(f"onair profiler: python {sys.version.split()[0]}, {self.hz} Hz, {kind} clock"))
        p.string_table.extend(strings)
        return p


def profile_for(seconds: float, hz: int = 100, clock: Clock = "cpu") -> Profile:
    """Profile the whole process for ``seconds`` (blocking the caller's thread)."""
    with Sampler(hz, clock) as sampler:
        time.sleep(seconds)
    return sampler.stop() if sampler._thread else sampler.profile()


Sink = Callable[[bytes], Awaitable[None]]


def http_sink(url: str, app: str, token: str | None = None, timeout_s: float = 10.0) -> Sink:
    """Upload to a profstore: ``POST {url}/v1/profiles/{app}``."""
    import httpx

    from onair.pgo.storage import check_app

    endpoint = f"{url.rstrip('/')}/v1/profiles/{check_app(app)}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # One client for the life of the sink, made on first use (in the uploader's loop): a client
    # per upload would build a TLS context (tens of ms of CPU) every time.
    clients: list[httpx.AsyncClient] = []

    async def send(data: bytes) -> None:
        if not clients:
            clients.append(httpx.AsyncClient(timeout=timeout_s, headers=headers))
        resp = await clients[0].post(endpoint, content=data)
        resp.raise_for_status()

    return send


class ProfileUploader:
    """Every ``interval_s`` (plus up to ``jitter`` of it at random), profile for ``duration_s`` and
    send the gzip profile to ``sink``. Errors are logged and counted; the loop never dies of them."""

    def __init__(
        self,
        sink: Sink,
        *,
        interval_s: float = 60.0,
        duration_s: float = 10.0,
        jitter: float = 0.1,
        hz: int = 100,
        clock: Clock = "cpu",
    ) -> None:
        if duration_s <= 0 or interval_s < duration_s:
            raise ValueError("need 0 < duration_s <= interval_s")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter is a fraction of the interval in [0, 1]")
        self.sink = sink
        self.interval_s = interval_s
        self.duration_s = duration_s
        self.jitter = jitter
        self.hz = hz
        self.clock: Clock = clock
        self.uploaded = 0
        self.errors = 0
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> bool:
        """Profile once and upload; True on success. Never raises (except cancellation)."""
        sampler = Sampler(self.hz, self.clock)
        try:
            sampler.start()
            try:
                await asyncio.sleep(self.duration_s)
            finally:
                profile = sampler.stop()
            data = await asyncio.to_thread(_gzip, profile)
            await self.sink(data)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.errors += 1
            _log("warning", "profile upload failed", error=repr(exc), errors=self.errors)
            return False
        self.uploaded += 1
        _log("debug", "profile uploaded", size=len(data), samples=len(profile.sample))
        return True

    async def run(self) -> None:
        # Start at a random point of the first interval so replicas do not profile in lockstep.
        await asyncio.sleep(random.uniform(0, self.jitter * self.interval_s))
        while True:
            started = time.monotonic()
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # pragma: no cover - run_once already catches; belt and braces
                self.errors += 1
                _log("error", "profiler loop error", error=repr(exc))
            pause = self.interval_s * (1 + random.uniform(-self.jitter, self.jitter) / 2)
            await asyncio.sleep(max(0.0, pause - (time.monotonic() - started)))

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name="onair-pgo-uploader")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
