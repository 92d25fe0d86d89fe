"""The measurement behind ``onair bench cache``: three read strategies against Valkey + SQLite.

For each strategy, P reader processes (spawned) each make ``reads`` reads of keys drawn Zipf(s)
over ``keys`` keys, while a separate writer process commits to SQLite and then updates Valkey
for 1% as many keys (paced by the readers' progress, so writes are spread over the run):

* ``cache_aside``: GET; on a miss load from SQLite and SET. No local state.
* ``valkey_builtin``: valkey-py 6.2's own client-side cache (``valkey.asyncio.Valkey(protocol=3,
  cache_enabled=True)``: per connection, tracking in RESP3 on the data connection, invalidations
  processed when the next command runs on that connection).
* ``onair``: :class:`onair.cache.CachedReader` (near cache + CLIENT TRACKING default mode +
  single-flight).

Steady state is measured: Valkey holds every key first and each reader process reads every key
once (warm-up, not counted) before the measured reads begin. Readers are paced (``rate`` reads per
second each, default 5,000; 0 = flat out) so that, as in a service, the process is not pinned at
100% CPU: on a 2-core machine, flat-out reader processes starve each other's event loops and the
measured invalidation delay becomes mostly scheduler delay.

Definitions
-----------
* Valkey commands per 1,000 reads: ``INFO commandstats`` call deltas over the measured phase,
  minus the benchmark's own ``INFO`` and minus the writer's commands (they are writes, not reads).
* Stale read: a read of key k that returned version v although a write of k with a version > v
  had been acknowledged (the writer's Valkey step returned) *and* its invalidation had been
  delivered to that reader process before the read started. Delivery time is when the process
  processed the invalidation (onair: the tracker's read loop; valkey_builtin: valkey-py's push
  handler); a process that received no invalidation for that write (it held no copy), and every
  cache_aside reader, counts as delivered at the ack. All clocks are CLOCK_MONOTONIC (one clock per
  machine), so times compare across processes.
* Invalidation delay: for each write and each reader process that received its invalidation,
  (time the entry was dropped) - (write ack), clamped at 0 (the push can beat the ack).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import multiprocessing as mp
import os
import pickle
import random
import sqlite3
import tempfile
import time
import uuid
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STRATEGIES = ("cache_aside", "valkey_builtin", "onair")
VALUE_PAD = "x" * 96
TTL_S = 3600


@dataclass
class BenchConfig:
    valkey_url: str
    readers: int = 2
    reads: int = 20_000
    keys: int = 10_000
    write_ratio: float = 0.01
    zipf_s: float = 1.1
    write_mode: str = "set"  # set: commit then SET the new value; delete: commit then DEL/tombstone
    seed: int = 1
    rate: float = 5000.0  # reads per second per reader process (0: as fast as possible)
    strategies: tuple[str, ...] = STRATEGIES
    workdir: str = ""


@dataclass
class StrategyResult:
    name: str
    reads: int
    valkey_cmds: int
    writer_cmds: int
    writes: int
    db_loads: int
    p50_us: float
    p99_us: float
    stale_reads: int
    inval_p50_ms: float | None
    inval_p99_ms: float | None
    inval_samples: int
    seconds: float
    commands: dict[str, int] = field(default_factory=dict)

    @property
    def cmds_per_1000(self) -> float:
        return 1000.0 * self.valkey_cmds / max(1, self.reads)


# -- shared helpers ------------------------------------------------------------------------------------
def zipf_cum_weights(n: int, s: float) -> list[float]:
    return list(itertools.accumulate(1.0 / (r**s) for r in range(1, n + 1)))


def draw_keys(n: int, s: float, count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return rng.choices(range(n), cum_weights=zipf_cum_weights(n, s), k=count)


def item_key(ns: str, i: int) -> str:
    return f"{ns}:item:{i}"


def make_db(path: str, keys: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)")
    conn.execute("DELETE FROM items")
    conn.executemany("INSERT INTO items (id, version) VALUES (?, 1)", ((i,) for i in range(keys)))
    conn.commit()
    conn.close()


def open_db(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def db_value(conn: sqlite3.Connection, i: int) -> dict[str, Any]:
    row = conn.execute("SELECT version FROM items WHERE id=?", (i,)).fetchone()
    return {"id": i, "v": int(row[0]), "pad": VALUE_PAD}


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


# -- reader process --------------------------------------------------------------------------------------
@dataclass
class _ReaderArgs:
    strategy: str
    index: int
    cfg: BenchConfig
    ns: str
    db_path: str
    out_path: str


def reader_main(args: _ReaderArgs, barrier: Any, go: Any, progress: Any) -> None:
    result = asyncio.run(_reader(args, barrier, go, progress))
    Path(args.out_path).write_bytes(pickle.dumps(result))


async def _reader(args: _ReaderArgs, barrier: Any, go: Any, progress: Any) -> dict[str, Any]:
    from onair.cache import CachedReader, Codec, NearCache, Tracker
    from onair.clients import ValkeyClient

    cfg = args.cfg
    codec = Codec()
    db = open_db(args.db_path)
    loads = 0
    inval: list[tuple[int, int, bool]] = []  # (key id or -1 for a flush, time ns, held a copy)
    prefix = f"{args.ns}:item:"
    plen = len(prefix)
    held: Callable[[str], bool] = lambda _k: False  # noqa: E731 - replaced per strategy

    recording = [True]  # off once the measured reads are done (closing flushes are not invalidations)

    def record(keys: list[str] | None) -> None:
        if not recording[0]:
            return
        now = time.perf_counter_ns()
        if keys is None:
            inval.append((-1, now, True))
            return
        for k in keys:
            if k.startswith(prefix):
                inval.append((int(k[plen:]), now, held(k)))

    async def load(i: int) -> dict[str, Any]:
        nonlocal loads
        loads += 1
        return db_value(db, i)

    closers: list[Callable[[], Any]] = []
    get: Callable[[int], Any]

    def cache_aside(valkey: Any) -> Callable[[int], Any]:
        """Read-through with ``valkey`` (a plain or client-caching client): GET, else load and SET."""

        async def get_cached(i: int) -> Any:
            key = prefix + str(i)
            raw = await valkey.get(key)
            if raw is not None:
                return codec.decode(raw)
            value = await load(i)
            await valkey.set(key, codec.encode(value), ex=TTL_S)
            return value

        return get_cached

    if args.strategy == "cache_aside":
        import valkey.asyncio as avalkey

        plain = avalkey.Valkey.from_url(cfg.valkey_url)
        closers.append(plain.aclose)
        get = cache_aside(plain)
    elif args.strategy == "valkey_builtin":
        import valkey.asyncio as avalkey
        from valkey.asyncio.connection import AbstractConnection

        original = AbstractConnection._cache_invalidation_process

        def patched(self: Any, data: Any) -> None:
            nonlocal held
            keys = data[1]
            cached_keys = self.client_cache.key_commands_map
            held = lambda k: bool(cached_keys.get(k))  # noqa: E731
            record(None if keys is None else [k.decode() if isinstance(k, bytes) else k for k in keys])
            original(self, data)

        AbstractConnection._cache_invalidation_process = patched  # type: ignore[method-assign]
        builtin = avalkey.Valkey.from_url(
            cfg.valkey_url, protocol=3, cache_enabled=True, cache_max_size=2 * cfg.keys
        )
        closers.append(builtin.aclose)
        get = cache_aside(builtin)
    else:
        client = ValkeyClient(cfg.valkey_url, namespace=args.ns)
        await client.start()
        tracker = Tracker(client)
        await tracker.start()
        near = NearCache(max_entries=2 * cfg.keys, max_bytes=256 * 1024 * 1024, ttl_s=TTL_S)
        held = near.__contains__
        tracker.add_listener(record)  # before the reader's own listener, which drops the entry
        reader = CachedReader(client, tracker, near=near, codec=codec, ttl_s=TTL_S, name=f"bench{args.index}")
        reader_get = reader.get

        async def get_c(i: int) -> Any:
            return await reader_get(prefix + str(i), lambda: load(i))

        get = get_c

        async def close_c() -> None:
            reader.close()
            await tracker.close()
            await client.close()

        closers.append(close_c)

    # warm-up: every key once (not measured)
    if args.strategy != "cache_aside":
        for i in range(cfg.keys):
            await get(i)
    loads = 0
    inval.clear()
    seq = draw_keys(cfg.keys, cfg.zipf_s, cfg.reads, cfg.seed * 1000 + args.index)
    starts = array("q")
    ends = array("q")
    versions = array("q")
    await asyncio.to_thread(barrier.wait)
    await asyncio.to_thread(go.wait)
    pc = time.perf_counter_ns
    t_begin = pc()
    interval_ns = int(1e9 / cfg.rate) if cfg.rate > 0 else 0
    for n, i in enumerate(seq):
        if interval_ns:
            ahead = t_begin + n * interval_ns - pc()
            if ahead > 2_000_000:  # sleep in slices of >= 2 ms (the event loop's timer granularity)
                await asyncio.sleep(ahead / 1e9)
        t0 = pc()
        value = await get(i)
        t1 = pc()
        starts.append(t0)
        ends.append(t1)
        versions.append(value["v"])
        if n % 50 == 49:
            with progress.get_lock():
                progress.value += 50
        # One read per "request": a service yields to the event loop between requests, which is
        # when background readers (the tracker) run. Not part of the measured latency.
        await asyncio.sleep(0)
    t_end = pc()
    recording[0] = False
    with progress.get_lock():
        progress.value += len(seq) % 50
    for close in closers:
        await close()
    db.close()
    return {
        "keys": array("q", seq),
        "starts": starts,
        "ends": ends,
        "versions": versions,
        "loads": loads,
        "inval": inval,
        "seconds": (t_end - t_begin) / 1e9,
    }


# -- writer process --------------------------------------------------------------------------------------
def writer_main(cfg: BenchConfig, strategy: str, ns: str, db_path: str, out_path: str, barrier: Any,
                go: Any, stop: Any, progress: Any) -> None:  # fmt: skip
    writes = asyncio.run(_writer(cfg, strategy, ns, db_path, barrier, go, stop, progress))
    Path(out_path).write_bytes(pickle.dumps({"writes": writes}))


async def _writer(
    cfg: BenchConfig, strategy: str, ns: str, db_path: str, barrier: Any, go: Any, stop: Any, progress: Any
) -> list[tuple[int, int, int, int]]:
    import valkey.asyncio as avalkey

    from onair.cache import CachedReader, Codec, Tracker
    from onair.clients import ValkeyClient

    codec = Codec()
    db = open_db(db_path)
    plain = avalkey.Valkey.from_url(cfg.valkey_url)
    client = ValkeyClient(cfg.valkey_url, namespace=ns)
    await client.start()
    tracker: Tracker | None = None
    cached: CachedReader | None = None
    if strategy == "onair":
        tracker = Tracker(client)
        await tracker.start()
        cached = CachedReader(client, tracker, codec=codec, ttl_s=TTL_S, name="bench-writer")
    rng_keys = draw_keys(cfg.keys, cfg.zipf_s, max(1, int(cfg.readers * cfg.reads * cfg.write_ratio) + 10),
                         cfg.seed * 7919)  # fmt: skip
    writes: list[tuple[int, int, int, int]] = []  # key, version, t_send, t_ack
    await plain.ping()  # connect now, not during the measured phase
    await client.ping()
    await asyncio.to_thread(barrier.wait)
    await asyncio.to_thread(go.wait)
    every = 1.0 / cfg.write_ratio if cfg.write_ratio > 0 else float("inf")
    n = 0
    while not stop.is_set() and n < len(rng_keys):
        if progress.value < (n + 1) * every:
            await asyncio.sleep(0.0005)
            continue
        i = rng_keys[n]
        n += 1
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE items SET version = version + 1 WHERE id=?", (i,))
        value = db_value(db, i)
        db.execute("COMMIT")
        key = item_key(ns, i)
        t_send = time.perf_counter_ns()
        if cached is not None:
            if cfg.write_mode == "set":
                await cached.publish(key, value)
            else:
                await cached.invalidate(key)
        elif cfg.write_mode == "set":
            await plain.set(key, codec.encode(value), ex=TTL_S)
        else:
            await plain.delete(key)
        t_ack = time.perf_counter_ns()
        writes.append((i, value["v"], t_send, t_ack))
    if cached is not None:
        cached.close()
    if tracker is not None:
        await tracker.close()
    await client.close()
    await plain.aclose()
    db.close()
    return writes


# -- analysis ------------------------------------------------------------------------------------------
def count_stale(
    reader: dict[str, Any], writes: list[tuple[int, int, int, int]], strategy: str
) -> tuple[int, list[float]]:
    """Stale reads of one reader process, and its invalidation delays (ms).

    A write's invalidation is the first one the process received for that key (or a flush) after
    the write was sent and before the next write of the key was sent. Delays are only taken when
    the process held a copy ("entry gone"); delivery counts either way.
    """
    by_key: dict[int, list[tuple[int, int, int]]] = {}
    for i, version, t_send, t_ack in writes:
        by_key.setdefault(i, []).append((version, t_send, t_ack))
    recv_by_key: dict[int, list[tuple[int, bool]]] = {}
    flushes: list[int] = []
    for i, t, had in reader["inval"]:
        if i < 0:
            flushes.append(t)
        else:
            recv_by_key.setdefault(i, []).append((t, had))
    delays: list[float] = []
    delivered: dict[int, tuple[list[int], list[int]]] = {}
    for i, ws in by_key.items():
        ws.sort(key=lambda w: w[1])
        recv = sorted(recv_by_key.get(i, []))
        recv_t = [t for t, _ in recv]
        points: list[tuple[int, int]] = []
        for n, (version, t_send, t_ack) in enumerate(ws):
            at = t_ack
            if strategy != "cache_aside":
                t_next = ws[n + 1][1] if n + 1 < len(ws) else 1 << 62
                j = bisect.bisect_left(recv_t, t_send)
                f = bisect.bisect_left(flushes, t_send)
                got: tuple[int, bool] | None = recv[j] if j < len(recv) and recv_t[j] < t_next else None
                if f < len(flushes) and flushes[f] < t_next and (got is None or flushes[f] < got[0]):
                    got = (flushes[f], True)
                if got is not None:
                    if got[1]:
                        delays.append(max(0, got[0] - t_ack) / 1e6)
                    at = max(t_ack, got[0])
            points.append((at, version))
        points.sort()
        times: list[int] = []
        maxv: list[int] = []
        best = 0
        for at, version in points:
            best = max(best, version)
            times.append(at)
            maxv.append(best)
        delivered[i] = (times, maxv)
    stale = 0
    for i, start, version in zip(reader["keys"], reader["starts"], reader["versions"], strict=True):
        d = delivered.get(i)
        if d is None:
            continue
        j = bisect.bisect_right(d[0], start)
        if j and version < d[1][j - 1]:
            stale += 1
    return stale, delays


def commandstats(info: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, stats in info.items():
        if name.startswith("cmdstat_") and isinstance(stats, dict):
            out[name[len("cmdstat_") :]] = int(stats.get("calls", 0))
    return out


async def _info(url: str) -> dict[str, int]:
    import valkey.asyncio as avalkey

    client = avalkey.Valkey.from_url(url)
    try:
        return commandstats(await client.info("commandstats"))
    finally:
        await client.aclose()


async def _prefill(url: str, ns: str, keys: int, db_path: str) -> None:
    import valkey.asyncio as avalkey

    from onair.cache import Codec

    codec = Codec()
    db = open_db(db_path)
    client = avalkey.Valkey.from_url(url)
    try:
        for start in range(0, keys, 1000):
            pipe = client.pipeline(transaction=False)
            for i in range(start, min(keys, start + 1000)):
                pipe.set(item_key(ns, i), codec.encode(db_value(db, i)), ex=TTL_S)
            await pipe.execute()
    finally:
        await client.aclose()
        db.close()


async def _cleanup(url: str, ns: str) -> None:
    import valkey.asyncio as avalkey

    client = avalkey.Valkey.from_url(url)
    try:
        batch: list[Any] = []
        async for key in client.scan_iter(match=f"{ns}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await client.unlink(*batch)
                batch = []
        if batch:
            await client.unlink(*batch)
    finally:
        await client.aclose()


def run_strategy(cfg: BenchConfig, strategy: str, note: Callable[[str, float], None]) -> StrategyResult:
    ctx = mp.get_context("spawn")
    run_id = uuid.uuid4().hex[:8]
    ns = f"bench-cache-{run_id}-{strategy}"
    work = Path(cfg.workdir)
    db_path = str(work / "bench.db")
    make_db(db_path, cfg.keys)
    asyncio.run(_prefill(cfg.valkey_url, ns, cfg.keys, db_path))
    barrier = ctx.Barrier(cfg.readers + 2)
    go = ctx.Event()
    stop = ctx.Event()
    progress = ctx.Value("q", 0)
    outs = [str(work / f"{strategy}-r{i}.pkl") for i in range(cfg.readers)]
    wout = str(work / f"{strategy}-w.pkl")
    procs = [
        ctx.Process(
            target=reader_main,
            args=(_ReaderArgs(strategy, i, cfg, ns, db_path, outs[i]), barrier, go, progress),
            daemon=True,
        )
        for i in range(cfg.readers)
    ]
    writer = ctx.Process(
        target=writer_main, args=(cfg, strategy, ns, db_path, wout, barrier, go, stop, progress), daemon=True
    )
    for p in [*procs, writer]:
        p.start()
    try:
        note(f"{strategy}: warming up", 0.0)
        barrier.wait(timeout=600)
        before = asyncio.run(_info(cfg.valkey_url))
        go.set()
        total = cfg.readers * cfg.reads
        t0 = time.perf_counter()
        while any(p.is_alive() for p in procs):
            note(f"{strategy}: measuring", progress.value / max(1, total))
            for p in procs:
                p.join(timeout=0.1)
        seconds = time.perf_counter() - t0
        stop.set()
        writer.join(timeout=60)
        after = asyncio.run(_info(cfg.valkey_url))
    finally:
        for p in [*procs, writer]:
            if p.is_alive():
                p.terminate()
                p.join(5)
    bad = [p.exitcode for p in [*procs, writer] if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{strategy}: a benchmark process failed (exit codes {bad})")
    readers = [pickle.loads(Path(o).read_bytes()) for o in outs]
    wres = pickle.loads(Path(wout).read_bytes())
    asyncio.run(_cleanup(cfg.valkey_url, ns))

    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    delta = {k: v for k, v in delta.items() if v > 0 and k != "info"}
    writes = wres["writes"]
    writer_cmds = len(writes)
    total_cmds = max(0, sum(delta.values()) - writer_cmds)
    latencies = sorted((e - s) / 1000.0 for r in readers for s, e in zip(r["starts"], r["ends"], strict=True))
    stale = 0
    delays: list[float] = []
    for r in readers:
        s, d = count_stale(r, writes, strategy)
        stale += s
        delays += d
    delays.sort()
    has_inval = strategy != "cache_aside" and bool(delays)
    return StrategyResult(
        name=strategy,
        reads=sum(len(r["keys"]) for r in readers),
        valkey_cmds=total_cmds,
        writer_cmds=writer_cmds,
        writes=len(writes),
        db_loads=sum(int(r["loads"]) for r in readers),
        p50_us=round(percentile(latencies, 0.50), 2),
        p99_us=round(percentile(latencies, 0.99), 2),
        stale_reads=stale,
        inval_p50_ms=round(percentile(delays, 0.50), 3) if has_inval else None,
        inval_p99_ms=round(percentile(delays, 0.99), 3) if has_inval else None,
        inval_samples=len(delays),
        seconds=round(seconds, 3),
        commands=delta,
    )


async def singleflight_loads(url: str, db_path: str, concurrent: int = 1000) -> int:
    """1,000 concurrent misses of one key through :class:`CachedReader`: how many database loads."""
    from onair.cache import CachedReader, Tracker
    from onair.clients import ValkeyClient

    db = open_db(db_path)
    loads = 0

    async def loader() -> dict[str, Any]:
        nonlocal loads
        loads += 1
        return await asyncio.to_thread(db_value, db, 0)

    ns = f"bench-cache-sf-{uuid.uuid4().hex[:8]}"
    async with ValkeyClient(url, namespace=ns) as client, Tracker(client) as tracker:
        reader = CachedReader(client, tracker, name="bench-sf")
        key = client.key("item", 0)
        values = await asyncio.gather(*(reader.get(key, loader) for _ in range(concurrent)))
        assert all(v == values[0] for v in values)
        reader.close()
        await client.raw.delete(key)
    db.close()
    return loads


def run(cfg: BenchConfig, note: Callable[[str, float], None]) -> dict[str, Any]:
    """Run every strategy; return the results and the single-flight figure."""
    own_dir = None
    if not cfg.workdir:
        own_dir = tempfile.TemporaryDirectory(prefix="onair-bench-cache-")
        cfg.workdir = own_dir.name
    try:
        results = {name: run_strategy(cfg, name, note) for name in cfg.strategies}
        note("single-flight: 1,000 concurrent misses", 1.0)
        db_path = os.path.join(cfg.workdir, "bench.db")
        sf = asyncio.run(singleflight_loads(cfg.valkey_url, db_path))
    finally:
        if own_dir is not None:
            own_dir.cleanup()
            cfg.workdir = ""
    return {"results": results, "singleflight": sf}


def summary_json(out: dict[str, Any]) -> dict[str, Any]:
    results: dict[str, StrategyResult] = out["results"]
    onair = results.get("onair")
    return {
        "strategies": {
            name: {
                "valkey_cmds_per_1000_reads": round(r.cmds_per_1000, 2),
                "db_loads": r.db_loads,
                "p50_us": r.p50_us,
                "p99_us": r.p99_us,
                "stale_reads": r.stale_reads,
            }
            for name, r in results.items()
        },
        "invalidation_p99_ms": onair.inval_p99_ms if onair is not None else None,
        "singleflight_db_loads_for_1000_concurrent_misses": out["singleflight"],
    }
