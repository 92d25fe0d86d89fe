"""The fan-out benchmark behind ``onair bench fanout``: in-process, then NATS -> SSE end to end.

(a) **In process.** ``subscribers`` readers, ``messages`` messages, ``buffer`` entries of window:
:class:`FanoutLog` against one bounded ``asyncio.Queue(buffer)`` per subscriber (the
straightforward design). Both get the same policy: the writer never blocks; a full queue drops its
oldest entry and counts a gap, as the log does. The writer yields to the loop after every
``buffer // 2`` messages, so in both designs every reader is woken once per burst and nothing is
dropped (both runs check that every reader got every message). Two ways of consuming:

* ``batched`` (the headline figures): a reader takes everything that is ready at each wake-up,
  which is how the SSE/WebSocket endpoints consume. The log's reader takes the batch as a whole
  (``sub.drain`` and ``n += len(batch)``, as the endpoints do ``drain_encoded`` and one join per
  write: no Python work per item; a ``Gap``, which ``drain`` returns alone, is counted exactly).
  The queue's reader does ``await q.get()`` then ``get_nowait()`` per ready item: an
  ``asyncio.Queue`` has no batch get, so per-item work is inherent to that design;
* ``per_item``: ``async for item in sub`` against ``await q.get()`` per message.

Time is measured without tracemalloc; peak traced memory in a second run of ``min(messages,
20 * buffer)`` messages (the peak is reached within the first bursts), traced from the moment the
reader tasks exist (they are the same in both designs) until the last message is delivered, so
it covers the queues or cursors, the entries held and everything allocated while delivering.

(b) **End to end.** A NATS server (the devstack's, unless ``--nats-url``), one server process
(uvicorn + :class:`FanoutBridge` + SSE), ``clients`` SSE connections over loopback from separate
client processes (raw asyncio streams), and this process publishing ``rate`` messages/s for
``seconds`` with a send timestamp in each. Clients check every message's sequence number (lost =
expected - received) and record latency in 0.1 ms buckets.

Run ``python -m onair.bench.fanout_harness serve|clients ...`` for the two helper processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from onair.fanout.log import FanoutLog, Gap

# -- (a) in process ----------------------------------------------------------------------------


@dataclass
class InprocRun:
    design: str
    mode: str
    seconds: float
    deliveries: int
    gaps: int
    peak_bytes: int = 0

    @property
    def per_s(self) -> float:
        return self.deliveries / self.seconds if self.seconds else 0.0


async def _drive(
    make_reader: Callable[[asyncio.Event], Any],
    publish: Callable[[bytes], object],
    finish: Callable[[], Any],
    subscribers: int,
    payloads: list[bytes],
    burst: int,
    trace: bool,
) -> tuple[float, int, list[tuple[int, int]]]:
    go = asyncio.Event()
    tasks = [asyncio.create_task(make_reader(go)) for _ in range(subscribers)]
    await asyncio.sleep(0)  # every reader task exists and waits for go
    gc.collect()
    if trace:
        tracemalloc.start()
        tracemalloc.reset_peak()
    t0 = time.perf_counter()
    go.set()
    await asyncio.sleep(0)  # readers subscribe and park
    for i, payload in enumerate(payloads, 1):
        publish(payload)
        if i % burst == 0:
            await asyncio.sleep(0)
    await asyncio.sleep(0)  # the readers take the last burst
    peak = 0
    if trace:  # the peak while delivering (not the harness's own end-of-run gather)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    await finish()
    results = await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    return elapsed, peak, results


async def _run_log(subscribers: int, payloads: list[bytes], buffer: int, mode: str, trace: bool) -> InprocRun:
    log: FanoutLog[bytes] = FanoutLog(buffer, name="bench")

    async def reader(go: asyncio.Event) -> tuple[int, int]:
        await go.wait()
        sub = log.subscribe()
        n = gaps = 0
        if mode == "per_item":
            async for item in sub:
                if item.__class__ is Gap:
                    gaps += 1
                else:
                    n += 1
        else:
            # As the endpoints consume: the batch as a whole, no per-item Python work. Only
            # payloads are published here, so the one Gap a batch can hold is drain's "behind"
            # marker, which it returns alone (checking the last element counts it exactly).
            while await sub.wait():
                batch = sub.drain(buffer)
                if batch and batch[-1].__class__ is Gap:
                    gaps += 1
                    n += len(batch) - 1
                else:
                    n += len(batch)
                del batch  # not held while parked (1,000 parked lists would be counted as peak)
        return n, gaps

    async def finish() -> None:
        log.close()

    elapsed, peak, results = await _drive(
        reader, log.publish, finish, subscribers, payloads, max(1, buffer // 2), trace
    )
    return InprocRun("fanoutlog", mode, elapsed, sum(r[0] for r in results), sum(r[1] for r in results), peak)


async def _run_queue(
    subscribers: int, payloads: list[bytes], buffer: int, mode: str, trace: bool
) -> InprocRun:
    queues: list[asyncio.Queue[bytes | None]] = []
    dropped = [0]

    async def reader(go: asyncio.Event) -> tuple[int, int]:
        await go.wait()
        q: asyncio.Queue[bytes | None] = asyncio.Queue(buffer)
        queues.append(q)
        n = 0
        if mode == "per_item":
            while (await q.get()) is not None:
                n += 1
        else:
            while True:
                item = await q.get()
                if item is None:
                    break
                n += 1
                while not q.empty():
                    if q.get_nowait() is None:
                        return n, 0
                    n += 1
        return n, 0

    def publish(payload: bytes) -> None:
        for q in queues:
            try:
                q.put_nowait(payload)
            except asyncio.QueueFull:  # same policy as the log: drop the oldest, count a gap
                q.get_nowait()
                q.put_nowait(payload)
                dropped[0] += 1

    async def finish() -> None:
        for q in queues:
            await q.put(None)

    elapsed, peak, results = await _drive(
        reader, publish, finish, subscribers, payloads, max(1, buffer // 2), trace
    )
    return InprocRun("queue", mode, elapsed, sum(r[0] for r in results), dropped[0], peak)


def run_inproc(
    subscribers: int, messages: int, buffer: int, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    note = progress or (lambda _m: None)
    payloads = [b"%d:" % i + b"x" * 64 for i in range(messages)]
    mem_payloads = payloads[: max(1, min(messages, 20 * buffer))]
    runs: dict[str, dict[str, InprocRun]] = {}
    for mode in ("batched", "per_item"):
        for design, fn in (("fanoutlog", _run_log), ("queue", _run_queue)):
            note(f"in-process {mode}: {design} timing")
            run = asyncio.run(fn(subscribers, payloads, buffer, mode, False))
            note(f"in-process {mode}: {design} memory")
            run.peak_bytes = asyncio.run(fn(subscribers, mem_payloads, buffer, mode, True)).peak_bytes
            runs.setdefault(mode, {})[design] = run
    expected = subscribers * messages
    out: dict[str, Any] = {"subscribers": subscribers, "messages": messages, "buffer": buffer}
    for mode, pair in runs.items():
        log_run, q_run = pair["fanoutlog"], pair["queue"]
        block = {
            "fanoutlog_s": round(log_run.seconds, 4),
            "queue_s": round(q_run.seconds, 4),
            "speedup": round(q_run.seconds / log_run.seconds, 2) if log_run.seconds else None,
            "fanoutlog_deliveries_per_s": round(log_run.per_s),
            "queue_deliveries_per_s": round(q_run.per_s),
            "fanoutlog_peak_bytes": log_run.peak_bytes,
            "queue_peak_bytes": q_run.peak_bytes,
            "mem_ratio": round(log_run.peak_bytes / q_run.peak_bytes, 4) if q_run.peak_bytes else None,
            "complete": log_run.deliveries == expected and q_run.deliveries == expected,
            "gaps": log_run.gaps + q_run.gaps,
        }
        if mode == "batched":
            out.update(block)
        else:
            out["per_item"] = block
    return out


# -- (b) end to end: NATS -> server process -> SSE clients ----------------------------------------

DATA_RE = re.compile(rb"data: (\d+) (\d+)\n")
TS_RE = re.compile(rb"data: \d+ (\d+)\n")
BUCKET_NS = 100_000  # 0.1 ms


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    del soft


def _run_loop(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)


def freeze_startup_objects() -> None:
    """Move everything allocated so far (modules, the app) out of the cyclic GC's reach.

    A full (generation 2) collection walks every tracked object of the process: with uvicorn,
    FastAPI, pydantic and nats-py loaded that is a few hundred thousand objects, a pause of
    ~50 ms that every connection's next write waits for (measured: the largest pause of the
    server, and the p99 of the end-to-end latency). Objects created at start-up live as long as
    the process; ``gc.freeze()`` after start-up is the usual remedy for a long-running server.
    """
    gc.collect()
    gc.freeze()


def serve_main(
    nats_url: str,
    pattern_prefix: str,
    port: int,
    capacity: int,
    fast_sse: bool = True,
    coalesce_s: float = 0.0,
) -> None:
    """The server process: NATS -> FanoutBridge -> SSE on 127.0.0.1:port (until killed)."""
    _raise_nofile()
    import uvicorn

    from onair.clients import NatsClient
    from onair.fanout.app import bridge_source, create_app
    from onair.fanout.bridge import FanoutBridge

    async def main() -> None:
        client = NatsClient(nats_url, subject_prefix=pattern_prefix, name="fanout-bench-server")
        bridge = FanoutBridge(client, capacity=capacity, own_client=True, coalesce_s=coalesce_s)
        await bridge.start()
        source = bridge_source(bridge, lambda t: client.subject("bench", t))
        app = create_app(source, heartbeat_s=15, fast_sse=fast_sse)
        freeze_startup_objects()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            log_level="warning",
            backlog=4096,
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        try:
            await server.serve()
        finally:
            await bridge.close()

    profile = os.environ.get("ONAIR_FANOUT_PROFILE")  # development aid: cProfile the server
    if profile:
        import cProfile
        import signal

        signal.signal(signal.SIGTERM, lambda *_: None)  # uvicorn re-raises it after its shutdown
        with cProfile.Profile() as prof:
            _run_loop(main())
        prof.dump_stats(profile)
    else:
        _run_loop(main())


@dataclass
class ClientStats:
    connections: int = 0
    received: int = 0
    lost: int = 0
    out_of_order: int = 0
    gap_events: int = 0
    cpu_s: float = 0.0
    hist: dict[int, int] = field(default_factory=dict)


class _SSEClient(asyncio.Protocol):
    """One SSE connection, parsed in ``data_received`` (no task or stream per connection).

    Loss is checked on every message (sequence numbers must run on without a hole); latency is
    recorded for every message of the connections with ``sample=True``.
    """

    def __init__(self, run: _ClientRun, sample: bool) -> None:
        self.run = run
        self.sample = sample
        self.buf = b""
        self.nxt = 0
        self.started = False
        self.transport: asyncio.Transport | None = None
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.run.request)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buf = self.buf + data if self.buf else data
        if not self.started:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if b" 200 " not in buf[: buf.find(b"\r\n")]:
                self._finish(RuntimeError(f"bad response: {buf[:100]!r}"))
                return
            self.started = True
            self.run.connected()
            buf = buf[end + 4 :]
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            self.buf = buf
            return
        ready, self.buf = buf[: cut + 2], buf[cut + 2 :]
        self._frames(ready, now)
        if self.nxt >= self.run.expected:
            self._finish(None)

    def _frames(self, ready: bytes, now: int) -> None:
        stats = self.run.stats
        n = ready.count(b"data: ")
        if not n:
            return
        gaps = ready.count(b"event: gap")
        if gaps:
            stats.gap_events += gaps
            n -= gaps
        i = ready.find(b"data: ") + 6
        j = ready.rfind(b"data: ") + 6
        first = int(ready[i : ready.index(b" ", i)]) if not gaps else -1
        last = int(ready[j : ready.index(b" ", j)]) if not gaps else -1
        if first == self.nxt and last - first + 1 == n:  # contiguous: the common case
            self.nxt = last + 1
            stats.received += n
            if self.sample:
                hist, top = self.run.hist, len(self.run.hist) - 1
                for ts_b in TS_RE.findall(ready):
                    b = (now - int(ts_b)) // BUCKET_NS
                    hist[b if b < top else top] += 1
            return
        for seq_b, ts_b in DATA_RE.findall(ready):  # a hole or a repeat: check one by one
            seq = int(seq_b)
            if seq < self.nxt:
                stats.out_of_order += 1
                continue
            self.nxt = seq + 1  # any skipped in between are lost (counted at the end)
            stats.received += 1
            if self.sample:
                b = (now - int(ts_b)) // BUCKET_NS
                self.run.hist[min(b, len(self.run.hist) - 1)] += 1

    def _finish(self, exc: BaseException | None) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            if exc is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


@dataclass
class _ClientRun:
    request: bytes
    expected: int
    count: int
    stats: ClientStats = field(default_factory=ClientStats)
    hist: list[int] = field(default_factory=lambda: [0] * 200_000)  # 0.1 ms buckets up to 20 s
    all_connected: asyncio.Event = field(default_factory=asyncio.Event)

    def connected(self) -> None:
        self.stats.connections += 1
        if self.stats.connections == self.count:
            self.all_connected.set()


async def _clients(
    port: int, path: str, count: int, expected: int, deadline_s: float, sample_every: int
) -> ClientStats:
    loop = asyncio.get_running_loop()
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode()
    run = _ClientRun(request, expected, count)
    protocols: list[_SSEClient] = []
    for i in range(count):
        _t, proto = await loop.create_connection(
            lambda i=i: _SSEClient(run, sample=i % sample_every == 0),  # type: ignore[misc]
            "127.0.0.1",
            port,
        )
        protocols.append(proto)
    print(json.dumps({"connecting": count}), flush=True)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(60):
            await run.all_connected.wait()
    print(json.dumps({"connected": run.stats.connections}), flush=True)
    waits = [p.done for p in protocols]
    _done, pending = await asyncio.wait(waits, timeout=deadline_s)
    for p in protocols:
        p._finish(None)
    stats = run.stats
    stats.lost = count * expected - stats.received
    stats.hist = {i: n for i, n in enumerate(run.hist) if n}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats.cpu_s = round(usage.ru_utime + usage.ru_stime, 2)
    del pending
    return stats


def clients_main(
    port: int, path: str, count: int, expected: int, deadline_s: float, sample_every: int
) -> None:
    """A client process: ``count`` SSE connections; prints one JSON line of ClientStats at the end."""
    _raise_nofile()
    stats = _run_loop(_clients(port, path, count, expected, deadline_s, sample_every))
    print(json.dumps({"result": asdict(stats)}), flush=True)


def _percentile(hist: dict[int, int], q: float) -> float | None:
    total = sum(hist.values())
    if not total:
        return None
    rank = q * total
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return (bucket + 1) * BUCKET_NS / 1e6  # upper edge of the bucket, in ms
    return None  # pragma: no cover


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process (Linux ``/proc``), for the report."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, IndexError, ValueError):
        return None


async def _wait_port(port: int, proc: asyncio.subprocess.Process, within: float = 30) -> None:
    async with asyncio.timeout(within):
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"fan-out server exited with {proc.returncode}")
            try:
                _r, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.1)


async def _read_json_line(stream: asyncio.StreamReader, key: str) -> dict[str, Any]:
    while True:
        line = await stream.readline()
        if not line:
            raise RuntimeError(f"client process ended before reporting {key!r}")
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict) and key in obj:
                return obj


async def _e2e(
    nats_url: str,
    clients: int,
    rate: int,
    seconds: float,
    capacity: int,
    client_procs: int,
    sample_every: int,
    fast_sse: bool,
    coalesce_s: float,
    note: Callable[[str], None],
) -> dict[str, Any]:
    from onair.clients import NatsClient
    from onair.fanout.app import free_port

    prefix = f"bench{os.getpid()}"
    port = free_port()
    expected = max(1, int(rate * seconds))
    env = {**os.environ, "ONAIR_LOG_LEVEL": "WARNING"}
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "onair.bench.fanout_harness",
        "serve",
        nats_url,
        prefix,
        str(port),
        str(capacity),
        "fast" if fast_sse else "sse-starlette",
        str(coalesce_s),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
    )
    procs: list[asyncio.subprocess.Process] = []
    try:
        await _wait_port(port, server)
        note(f"end to end: server up on :{port}, opening {clients} SSE connections")
        per = [
            clients // client_procs + (1 if i < clients % client_procs else 0) for i in range(client_procs)
        ]
        deadline = seconds + 30
        for n in per:
            if n == 0:
                continue
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "onair.bench.fanout_harness",
                    "clients",
                    str(port),
                    "/sse/live",
                    str(n),
                    str(expected),
                    str(deadline),
                    str(sample_every),
                    stdout=asyncio.subprocess.PIPE,
                    limit=1 << 26,
                    env=env,
                )
            )
        connected = 0
        for p in procs:
            assert p.stdout is not None
            connected += (await _read_json_line(p.stdout, "connected"))["connected"]
        if connected < clients:
            raise RuntimeError(f"only {connected} of {clients} SSE connections opened")
        async with NatsClient(nats_url, subject_prefix=prefix, name="fanout-bench-pub") as pub:
            subject = pub.subject("bench", "live")
            await asyncio.sleep(0.5)  # every connection's cursor is registered (the server flushed them)
            note(f"end to end: publishing {expected} messages at {rate}/s")
            t0 = time.perf_counter()
            for i in range(expected):
                target = t0 + i / rate
                delay = target - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await pub.publish(subject, b"%d %d" % (i, time.time_ns()))
            await pub.raw.flush()
            publish_s = time.perf_counter() - t0
        note("end to end: waiting for the clients")
        stats = ClientStats()
        for p in procs:
            assert p.stdout is not None
            res = (await _read_json_line(p.stdout, "result"))["result"]
            await p.wait()
            stats.connections += res["connections"]
            stats.received += res["received"]
            stats.lost += res["lost"]
            stats.out_of_order += res["out_of_order"]
            stats.gap_events += res["gap_events"]
            stats.cpu_s += res["cpu_s"]
            for k, v in res["hist"].items():
                stats.hist[int(k)] = stats.hist.get(int(k), 0) + v
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
        server_cpu = _cpu_seconds(server.pid)
        if server.returncode is None:
            server.terminate()
            try:
                async with asyncio.timeout(10):
                    await server.wait()
            except TimeoutError:  # pragma: no cover
                server.kill()
                await server.wait()
    return {
        "clients": clients,
        "rate": rate,
        "seconds": seconds,
        "messages": expected,
        "publish_s": round(publish_s, 3),
        "deliveries": stats.received,
        "p50_ms": _percentile(stats.hist, 0.50),
        "p99_ms": _percentile(stats.hist, 0.99),
        "max_ms": _percentile(stats.hist, 1.0),
        "lost": stats.lost,
        "gap_events": stats.gap_events,
        "out_of_order": stats.out_of_order,
        "endpoint": "SSEStream" if fast_sse else "sse-starlette",
        "coalesce_ms": coalesce_s * 1000,
        "latency_sampled_connections": len(range(0, clients, sample_every)),
        "server_cpu_s": server_cpu,
        "clients_cpu_s": round(stats.cpu_s, 2),
    }


def run_e2e(
    clients: int,
    rate: int,
    seconds: float,
    capacity: int = 1024,
    nats_url: str | None = None,
    client_procs: int = 1,
    sample_every: int = 10,
    fast_sse: bool = True,
    coalesce_s: float = 0.0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    note = progress or (lambda _m: None)

    def run(url: str) -> dict[str, Any]:
        return asyncio.run(
            _e2e(
                url, clients, rate, seconds, capacity, client_procs, sample_every, fast_sse, coalesce_s, note
            )
        )

    if nats_url:
        return run(nats_url)
    from onair.devstack import temporary_stack

    with temporary_stack(("nats",), note=lambda m: note(f"end to end: {m}")) as env:
        return run(env["ONAIR_NATS_URL"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m onair.bench.fanout_harness")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("nats_url")
    s.add_argument("prefix")
    s.add_argument("port", type=int)
    s.add_argument("capacity", type=int)
    s.add_argument("sse", choices=["fast", "sse-starlette"])
    s.add_argument("coalesce", type=float)
    c = sub.add_parser("clients")
    c.add_argument("port", type=int)
    c.add_argument("path")
    c.add_argument("count", type=int)
    c.add_argument("expected", type=int)
    c.add_argument("deadline", type=float)
    c.add_argument("sample_every", type=int)
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        serve_main(args.nats_url, args.prefix, args.port, args.capacity, args.sse == "fast", args.coalesce)
    else:
        clients_main(args.port, args.path, args.count, args.expected, args.deadline, args.sample_every)


if __name__ == "__main__":
    main()
