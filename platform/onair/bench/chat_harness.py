"""The chat benchmark behind ``onair bench chat``: SSE viewers of one room, messages posted at a rate.

**Direct scale run** (``--direct``): the devstack's Valkey, NATS and Kafka, a stand-in for the
gateway's identity keys, and ``onair serve chat`` as one process (:class:`onair.fleet.Fleet`). The
room is made the way production makes it (a ``media.broad_info.options`` event that chat projects).
Then ``viewers`` SSE connections to ``/chat/<room>/sse`` from separate client processes (raw
asyncio protocols, no task per connection), and this process posts ``rate`` messages/s for
``seconds`` through ``POST /chat/<room>/messages``, each text carrying its send time. Measured:

* ``scale_p50_ms`` / ``scale_p99_ms`` / ``scale_max_ms``: post (before the request is sent) to view
  (the frame read by a viewer), over every message of every ``sample_every``-th connection;
* ``lost``: messages a viewer should have got and did not (every connection checks every room
  event number runs on without a hole; a gap event counts its events as lost);
* ``bytes_per_viewer``: growth of the chat process's resident memory from before the viewers
  connected to when they all are, per viewer (what a connection costs the server);
* ``notify_p99_ms`` (with ``followers`` > 0): a ``media.live_stream.status`` open logged to Kafka
  -> the ``went_live`` frame on each follower's ``/notify/stream``.

**Through a gateway** (``gateway_url``): the same viewers and posts against a running deployment
(``room`` must exist, ``token`` is a user's access token for the posts); keys ``viewers``,
``delivered``, ``lost``, ``post_to_view_p50_ms``, ``post_to_view_p99_ms``.

``python -m onair.bench.chat_harness clients ...`` is the client process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from onair.bench.fanout_harness import (
    BUCKET_NS,
    _cpu_seconds,
    _percentile,
    _raise_nofile,
    _read_json_line,
    _run_loop,
)

Note = Callable[[str], None]
TS_RE = re.compile(rb'"text":"\d+ (\d+)"')
FRAME_RE = re.compile(rb'id: (\d+)\ndata: [^\n]*?"text":"\d+ (\d+)"')


# -- the client process --------------------------------------------------------------------------
@dataclass
class ClientStats:
    connections: int = 0
    received: int = 0
    lost: int = 0
    repeated: int = 0
    gap_events: int = 0
    cpu_s: float = 0.0
    hist: dict[int, int] = field(default_factory=dict)


@dataclass
class _Run:
    request: bytes
    first_n: int
    last_n: int
    count: int
    stats: ClientStats = field(default_factory=ClientStats)
    hist: list[int] = field(default_factory=lambda: [0] * 200_000)  # 0.1 ms buckets up to 20 s
    all_connected: asyncio.Event = field(default_factory=asyncio.Event)

    def connected(self) -> None:
        self.stats.connections += 1
        if self.stats.connections == self.count:
            self.all_connected.set()


class _RoomViewer(asyncio.Protocol):
    """One SSE viewer parsed in ``data_received``: frames ``id: <n>`` + ``data: {...}``."""

    def __init__(self, run: _Run, sample: bool) -> None:
        self.run = run
        self.sample = sample
        self.buf = b""
        self.nxt = run.first_n
        self.started = False
        self.transport: asyncio.Transport | None = None
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
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
                self._finish(RuntimeError(f"bad response: {buf[:200]!r}"))
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
        if self.nxt > self.run.last_n:
            self._finish(None)

    def _frames(self, ready: bytes, now: int) -> None:
        stats = self.run.stats
        gaps = ready.count(b"event: gap")
        stats.gap_events += gaps
        n = ready.count(b"id: ")
        if not n:
            return
        i = ready.find(b"id: ") + 4
        j = ready.rfind(b"id: ") + 4
        first = int(ready[i : ready.index(b"\n", i)])
        last = int(ready[j : ready.index(b"\n", j)])
        if not gaps and first == self.nxt and last - first + 1 == n:  # contiguous: the common case
            self.nxt = last + 1
            stats.received += n
            if self.sample:
                hist, top = self.run.hist, len(self.run.hist) - 1
                for ts_b in TS_RE.findall(ready):
                    b = (now - int(ts_b)) // BUCKET_NS
                    hist[b if b < top else top] += 1
            return
        for n_b, ts_b in FRAME_RE.findall(ready):  # history, a hole or a repeat: one by one
            seq = int(n_b)
            if seq < self.nxt:
                if seq >= self.run.first_n:
                    stats.repeated += 1
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


async def _clients(
    host: str,
    port: int,
    path: str,
    count: int,
    first_n: int,
    last_n: int,
    deadline_s: float,
    sample_every: int,
    headers: Mapping[str, str],
) -> ClientStats:
    loop = asyncio.get_running_loop()
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n{extra}\r\n".encode()
    run = _Run(request, first_n, last_n, count)
    viewers: list[_RoomViewer] = []
    for i in range(count):
        for attempt in range(20):
            try:
                _t, viewer = await loop.create_connection(
                    lambda i=i: _RoomViewer(run, sample=i % sample_every == 0),  # type: ignore[misc]
                    host,
                    port,
                )
                break
            except OSError:
                await asyncio.sleep(0.05 * (attempt + 1))
        else:
            raise RuntimeError(f"could not connect viewer {i}")
        viewers.append(viewer)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(120):
            await run.all_connected.wait()
    print(json.dumps({"connected": run.stats.connections}), flush=True)
    waits = [v.done for v in viewers]
    await asyncio.wait(waits, timeout=deadline_s)
    for v in viewers:
        v._finish(None)
    stats = run.stats
    stats.lost = count * (last_n - first_n + 1) - stats.received
    stats.hist = {i: n for i, n in enumerate(run.hist) if n}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats.cpu_s = round(usage.ru_utime + usage.ru_stime, 2)
    return stats


def clients_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="chat_harness clients")
    p.add_argument("url")
    p.add_argument("count", type=int)
    p.add_argument("first_n", type=int)
    p.add_argument("last_n", type=int)
    p.add_argument("deadline", type=float)
    p.add_argument("sample_every", type=int)
    p.add_argument("--header", action="append", default=[])
    a = p.parse_args(argv)
    _raise_nofile()
    u = urlsplit(a.url)
    headers = dict(h.split(":", 1) for h in a.header)
    stats = _run_loop(
        _clients(
            u.hostname or "127.0.0.1",
            u.port or 80,
            u.path + (f"?{u.query}" if u.query else ""),
            a.count,
            a.first_n,
            a.last_n,
            a.deadline,
            a.sample_every,
            {k.strip(): v.strip() for k, v in headers.items()},
        )
    )
    print(json.dumps({"result": asdict(stats)}), flush=True)


# -- the run -------------------------------------------------------------------------------------
@dataclass
class ChatBenchConfig:
    viewers: int = 10_000
    rate: float = 20.0
    seconds: float = 10.0
    client_procs: int = 2
    sample_every: int = 10
    followers: int = 100
    golives: int = 10
    gateway_url: str | None = None
    room: str | None = None
    token: str | None = None
    #: Direct run: use these servers (``ONAIR_VALKEY_URL``, ``ONAIR_NATS_URL``,
    #: ``ONAIR_KAFKA_BOOTSTRAP``) instead of starting them.
    backend: dict[str, str] | None = None


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _envelope(category: str, entity: str, **data: Any) -> Any:
    from onair.logstream import Envelope, new_event_id

    ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return Envelope(new_event_id(), ts, "bench", category, entity, 1, data)


async def _produce(bootstrap: str, envelopes: list[Any]) -> list[float]:
    """Log events as their producers would; the time each was acknowledged."""
    from onair.clients import KafkaClient

    kafka = KafkaClient(bootstrap, client_id="chat-bench")
    try:
        await kafka.ensure_topics(sorted({e.category for e in envelopes}))
        producer = await kafka.producer()
        try:
            acked = []
            for e in envelopes:
                fut = await producer.send(e.category, e.to_bytes(), key=e.entity.encode())
                await fut
                acked.append(time.time())
        finally:
            await kafka.release(producer)
    finally:
        await kafka.close()
    return acked


async def _spawn_clients(
    url: str, cfg: ChatBenchConfig, first_n: int, last_n: int, headers: Mapping[str, str]
) -> list[asyncio.subprocess.Process]:
    per = [
        cfg.viewers // cfg.client_procs + (1 if i < cfg.viewers % cfg.client_procs else 0)
        for i in range(cfg.client_procs)
    ]
    deadline = cfg.seconds + 60
    procs = []
    for n in per:
        if not n:
            continue
        args = [url, str(n), str(first_n), str(last_n), str(deadline), str(cfg.sample_every)]
        for k, v in headers.items():
            args += ["--header", f"{k}: {v}"]
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "onair.bench.chat_harness",
                "clients",
                *args,
                stdout=asyncio.subprocess.PIPE,
                limit=1 << 26,
            )
        )
    return procs


@dataclass
class Posts:
    seconds: float = 0.0
    errors: int = 0
    durations_ms: list[float] = field(default_factory=list)

    def quantile(self, q: float) -> float | None:
        d = sorted(self.durations_ms)
        return round(d[min(len(d) - 1, int(q * len(d)))], 1) if d else None


async def _post_messages(
    client: Any, path: str, count: int, rate: float, first_i: int, headers: Callable[[int], Mapping[str, str]]
) -> Posts:
    """``count`` posts at ``rate``/s (one at a time: a slow answer delays the next post)."""
    posts = Posts()
    t0 = time.perf_counter()
    for k in range(count):
        delay = t0 + k / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        i = first_i + k
        sent = time.perf_counter()
        r = await client.post(path, json={"text": f"{i} {time.time_ns()}"}, headers=headers(i))
        posts.durations_ms.append((time.perf_counter() - sent) * 1000)
        if r.status_code != 201:
            posts.errors += 1
    posts.seconds = time.perf_counter() - t0
    return posts


async def _collect(procs: list[asyncio.subprocess.Process]) -> ClientStats:
    stats = ClientStats()
    for p in procs:
        assert p.stdout is not None
        res = (await _read_json_line(p.stdout, "result"))["result"]
        await p.wait()
        for key in ("connections", "received", "lost", "repeated", "gap_events"):
            setattr(stats, key, getattr(stats, key) + res[key])
        stats.cpu_s += res["cpu_s"]
        for k, v in res["hist"].items():
            stats.hist[int(k)] = stats.hist.get(int(k), 0) + v
    return stats


async def _connect_all(procs: list[asyncio.subprocess.Process], want: int) -> int:
    connected = 0
    for p in procs:
        assert p.stdout is not None
        connected += (await _read_json_line(p.stdout, "connected"))["connected"]
    if connected < want:
        raise RuntimeError(f"only {connected} of {want} SSE viewers connected")
    return connected


async def _notify_latency(
    http: Any, keys: Any, bootstrap: str, channels: list[str], followers: int, note: Note
) -> dict[str, Any]:
    """Followers of ``channels`` on /notify/stream; each channel goes live; open logged -> frame read."""
    users = [f"fan_{i}" for i in range(followers)]
    for user in users:
        for channel in channels:
            r = await http.put(f"/follows/{channel}", headers=keys.headers(user))
            if r.status_code != 204:
                raise RuntimeError(f"follow failed: {r.status_code} {r.text}")
    received: dict[str, list[float]] = {c: [] for c in channels}
    ready = asyncio.Event()
    opened = [0]

    async def listen(user: str) -> None:
        async with http.stream("GET", "/notify/stream", headers=keys.headers(user), timeout=None) as resp:
            opened[0] += 1
            if opened[0] == followers:
                ready.set()
            async for line in resp.aiter_lines():
                if line.startswith("data: "):
                    channel = json.loads(line[6:]).get("channel")
                    if channel in received:
                        received[channel].append(time.time())

    tasks = [asyncio.create_task(listen(u)) for u in users]
    try:
        async with asyncio.timeout(60):
            await ready.wait()
        note(f"notify: {followers} followers listening; {len(channels)} channels go live")
        logged: dict[str, float] = {}
        for i, channel in enumerate(channels):
            [t] = await _produce(
                bootstrap,
                [
                    _envelope(
                        "media.live_stream.status", channel, status="open", session_id=f"s-{uuid.uuid4().hex}"
                    )
                ],
            )
            logged[channel] = t
            if i + 1 < len(channels):
                await asyncio.sleep(0.3)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                while sum(len(v) for v in received.values()) < followers * len(channels):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    lat = sorted((t - logged[c]) * 1000 for c, ts in received.items() for t in ts)
    expected = followers * len(channels)

    def q(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else None

    return {
        "notify_expected": expected,
        "notify_received": len(lat),
        "notify_p50_ms": q(0.5),
        "notify_p99_ms": q(0.99),
    }


async def _scale(cfg: ChatBenchConfig, env: Mapping[str, str], workdir: Path, note: Note) -> dict[str, Any]:
    import httpx

    from onair.bench.identity import IdentityKeys
    from onair.fleet import Fleet, Member

    keys = IdentityKeys()
    tag = uuid.uuid4().hex[:8]
    room = f"bench_{tag}"
    live = [f"live{i}_{tag}" for i in range(cfg.golives if cfg.followers else 0)]
    chat_env = {
        "ONAIR_IDENTITY_JWKS_URL": keys.jwks_url,
        "ONAIR_NATS_SUBJECT_PREFIX": f"bench{tag}",
        "ONAIR_VALKEY_NAMESPACE": f"bench{tag}",
        "ONAIR_CHAT_STREAM": f"CHAT_{tag}",
        "ONAIR_CHAT_NOTIFY_STREAM": f"NOTIFY_{tag}",
        "ONAIR_CHAT_USER_LIMIT": "1000000",
        "ONAIR_CHAT_ROOM_LIMIT": "1000000",
        "ONAIR_CHAT_NOTIFY_COOLDOWN_S": "0",
        "ONAIR_LOG_LEVEL": "WARNING",
        "ONAIR_PROFILING": "false",
    }
    fleet = Fleet(
        workdir / "fleet", [Member("chat", database=True)], backend_env=env, extra_env={"chat": chat_env}
    )
    procs: list[asyncio.subprocess.Process] = []
    try:
        note("starting onair serve chat")
        await asyncio.to_thread(fleet.start, None, note)
        running = fleet.load()["chat"]
        url, pid = running.url, running.pid
        bootstrap = env["ONAIR_KAFKA_BOOTSTRAP"]
        await _produce(
            bootstrap,
            [
                _envelope(
                    "media.broad_info.options",
                    c,
                    owner_id=f"u-{c}",
                    adult=False,
                    chat_mode="open",
                    visibility="public",
                )
                for c in [room, *live]
            ],
        )
        limits = httpx.Limits(max_connections=cfg.followers + 20, max_keepalive_connections=50)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
            note("waiting for chat to know the room (its chat.rooms projection)")
            for channel in [room, *live]:
                async with asyncio.timeout(90):
                    while (await http.get(f"/chat/{channel}/recent")).status_code != 200:  # noqa: ASYNC110
                        await asyncio.sleep(0.2)
            poster = keys.headers("bench_poster")
            warm = 5
            for i in range(warm):  # the post path and the room's log are warm before measuring
                await http.post(
                    f"/chat/{room}/messages", json={"text": f"{i} {time.time_ns()}"}, headers=poster
                )
            await asyncio.sleep(0.5)
            rss_before = rss_bytes(pid)
            messages = max(1, int(cfg.rate * cfg.seconds))
            first_n, last_n = warm + 1, warm + messages
            note(f"connecting {cfg.viewers} SSE viewers ({cfg.client_procs} client processes)")
            t_connect = time.perf_counter()
            procs = await _spawn_clients(f"{url}/chat/{room}/sse", cfg, first_n, last_n, {})
            await _connect_all(procs, cfg.viewers)
            connect_s = time.perf_counter() - t_connect
            await asyncio.sleep(1.0)
            rss_connected = rss_bytes(pid)
            cpu_before = _cpu_seconds(pid) or 0.0
            note(f"posting {messages} messages at {cfg.rate}/s")
            posts = await _post_messages(
                http,
                f"/chat/{room}/messages",
                messages,
                cfg.rate,
                warm,
                lambda _i: keys.headers("bench_poster"),
            )
            note("waiting for the viewers")
            stats = await _collect(procs)
            cpu_after = _cpu_seconds(pid) or 0.0
            rss_after = rss_bytes(pid)
            notify = (
                await _notify_latency(http, keys, bootstrap, live, cfg.followers, note)
                if live
                else {"notify_p99_ms": None}
            )
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
        await asyncio.to_thread(fleet.stop_all)
        keys.close()
    return {
        "scale_viewers": stats.connections,
        "messages": messages,
        "rate": cfg.rate,
        "delivered": stats.received,
        "lost": stats.lost,
        "repeated": stats.repeated,
        "gap_events": stats.gap_events,
        "post_errors": posts.errors,
        "publish_s": round(posts.seconds, 3),
        "post_p50_ms": posts.quantile(0.5),
        "post_p99_ms": posts.quantile(0.99),
        "scale_p50_ms": _percentile(stats.hist, 0.50),
        "scale_p99_ms": _percentile(stats.hist, 0.99),
        "scale_max_ms": _percentile(stats.hist, 1.0),
        "bytes_per_viewer": round((rss_connected - rss_before) / max(1, stats.connections or cfg.viewers)),
        "server_rss_mb": {
            "before": round(rss_before / 2**20, 1),
            "connected": round(rss_connected / 2**20, 1),
            "after": round(rss_after / 2**20, 1),
        },
        "connect_s": round(connect_s, 2),
        "server_cpu_s": round(cpu_after - cpu_before, 2),
        "clients_cpu_s": round(stats.cpu_s, 2),
        "latency_sampled_connections": len(range(0, cfg.viewers, cfg.sample_every)),
        **notify,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


async def _through_gateway(cfg: ChatBenchConfig, note: Note) -> dict[str, Any]:
    import httpx

    assert cfg.gateway_url and cfg.room and cfg.token
    auth = {"Authorization": f"Bearer {cfg.token}"}
    procs: list[asyncio.subprocess.Process] = []
    async with httpx.AsyncClient(base_url=cfg.gateway_url, timeout=30) as http:
        r = await http.get(f"/chat/{cfg.room}/recent", params={"limit": 1})
        if r.status_code != 200:
            raise RuntimeError(
                f"GET /chat/{cfg.room}/recent through the gateway: {r.status_code} {r.text[:200]}"
            )
        start = int(r.json()["last_n"])
        messages = max(1, int(cfg.rate * cfg.seconds))
        first_n, last_n = start + 1, start + messages
        try:
            note(f"connecting {cfg.viewers} SSE viewers through {cfg.gateway_url}")
            procs = await _spawn_clients(f"{cfg.gateway_url}/chat/{cfg.room}/sse", cfg, first_n, last_n, {})
            await _connect_all(procs, cfg.viewers)
            await asyncio.sleep(1.0)
            note(f"posting {messages} messages at {cfg.rate}/s through the gateway")
            posts = await _post_messages(
                http, f"/chat/{cfg.room}/messages", messages, cfg.rate, start, lambda _i: auth
            )
            stats = await _collect(procs)
        finally:
            for p in procs:
                if p.returncode is None:
                    p.kill()
                    await p.wait()
    return {
        "viewers": stats.connections,
        "messages": messages,
        "delivered": stats.received,
        "lost": stats.lost,
        "repeated": stats.repeated,
        "gap_events": stats.gap_events,
        "post_errors": posts.errors,
        "publish_s": round(posts.seconds, 3),
        "post_p50_ms": posts.quantile(0.5),
        "post_p99_ms": posts.quantile(0.99),
        "post_to_view_p50_ms": _percentile(stats.hist, 0.50),
        "post_to_view_p99_ms": _percentile(stats.hist, 0.99),
        "notify_p99_ms": None,  # needs a go-live logged by media: not driven through the gateway here
        "clients_cpu_s": round(stats.cpu_s, 2),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def run_benchmark(cfg: ChatBenchConfig, progress: Note | None = None) -> dict[str, Any]:
    note = progress or (lambda _m: None)
    _raise_nofile()
    if cfg.gateway_url:
        return asyncio.run(_through_gateway(cfg, note))
    from onair.devstack import temporary_stack

    with tempfile.TemporaryDirectory(prefix="onair-chat-bench-") as tmp:
        if cfg.backend:
            return asyncio.run(_scale(cfg, cfg.backend, Path(tmp), note))
        with temporary_stack(("valkey", "nats", "kafka"), note=note) as env:
            return asyncio.run(_scale(cfg, env, Path(tmp), note))


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "clients":
        raise SystemExit(
            "usage: python -m onair.bench.chat_harness clients URL COUNT FIRST_N LAST_N DEADLINE SAMPLE"
        )
    clients_main(args[1:])


if __name__ == "__main__":
    main()
