"""SSE and WebSocket endpoints on a real uvicorn: order, gaps, heartbeats, disconnects, slow clients."""

from __future__ import annotations

import asyncio
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from onair.fanout import FanoutLog, Subscription, metrics
from onair.fanout.app import create_app, running_server


class Topics:
    """Logs by topic, created on first use (the app's source)."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self.logs: dict[str, FanoutLog[Any]] = {}
        self.subs: list[Subscription[Any]] = []

    def log(self, topic: str) -> FanoutLog[Any]:
        if topic not in self.logs:
            self.logs[topic] = FanoutLog(self.capacity, name=f"test-{topic}")
        return self.logs[topic]

    async def __call__(self, topic: str, last: int) -> Subscription[Any]:
        sub = self.log(topic).subscribe(last=last)
        self.subs.append(sub)
        return sub


async def until(predicate: Any, within: float = 10) -> None:
    """Wait for a condition that has no event of its own (a count on the server side)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def parse_sse(text: str) -> list[dict[str, str]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if not line:
                continue
            key, _, value = line.partition(":")
            key, value = key or "comment", value.removeprefix(" ")
            fields[key] = f"{fields[key]}\n{value}" if key in fields else value
        if fields:
            events.append(fields)
    return events


def slow_counter(name: str) -> float:
    return metrics.snapshot().get(f"onair_fanout_slow_client_disconnects_total{{transport={name}}}", 0.0)


@pytest.fixture(params=[False, True], ids=["sse-starlette", "SSEStream"])
def fast_sse(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


async def test_sse_delivers_in_order_with_gap_events_and_heartbeats(fast_sse: bool) -> None:
    topics = Topics()
    async with (
        running_server(create_app(topics, heartbeat_s=0.2, fast_sse=fast_sse)) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as http,
        http.stream("GET", "/sse/a") as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        log = topics.log("a")
        await until(lambda: log.subscribers == 1)
        lines = resp.aiter_lines()
        # idle: a heartbeat comment arrives
        async with asyncio.timeout(5):
            while not (await anext(lines)).startswith(": ping"):
                pass
        for word in ("one", "two\nlines", "three"):
            log.publish(word)
        log.mark_gap("disconnected")
        text = ""
        async with asyncio.timeout(5):
            while text.count("event: gap") < 1:
                text += (await anext(lines)) + "\n"
            text += (await anext(lines)) + "\n"
        events = [e for e in parse_sse(text) if "comment" not in e]
        assert [e["data"] for e in events[:3]] == ["one", "two\nlines", "three"]
        gap = events[-1]
        assert gap["event"] == "gap"
        assert orjson.loads(gap["data"]) == {"missed": None, "reason": "disconnected"}


async def test_sse_client_disconnect_closes_the_cursor(fast_sse: bool) -> None:
    topics = Topics()
    async with running_server(create_app(topics, fast_sse=fast_sse)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http, http.stream("GET", "/sse/b") as resp:
            assert resp.status_code == 200
            await until(lambda: topics.log("b").subscribers == 1)
        await until(lambda: topics.log("b").subscribers == 0)
        assert topics.log("b").waiting == 0


async def raw_sse_reader(base: str, path: str, *, rcvbuf: int = 2048) -> tuple[asyncio.StreamReader, Any]:
    """An HTTP/1.1 GET on a socket with a tiny receive buffer, so the server's sends block."""
    url = urlsplit(base)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (url.hostname, url.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 24)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    return reader, writer


def dechunk(raw: bytes) -> str:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0]
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out.decode()


async def flood_until_behind(topics: Topics, log: FanoutLog[Any], payload: str, limit: int = 200_000) -> int:
    """Publish until the (single) server-side cursor fell out of the window; return how many."""
    n = 0
    await until(lambda: log.subscribers == 1)
    (sub,) = topics.subs
    while sub.lag <= log.capacity and n < limit:
        for _ in range(8):
            log.publish(f"{n}:{payload}")
            n += 1
        await asyncio.sleep(0)
    assert sub.lag > log.capacity, "the client never fell behind"
    return n


@pytest.mark.parametrize("policy", ["skip", "disconnect"])
async def test_sse_slow_client_policy(policy: str, fast_sse: bool) -> None:
    topics = Topics(capacity=32)
    before = slow_counter("sse")
    async with running_server(create_app(topics, heartbeat_s=60, fast_sse=fast_sse)) as base:
        reader, writer = await raw_sse_reader(base, f"/sse/slow?policy={policy}")
        log = topics.log("slow")
        total = await flood_until_behind(topics, log, "x" * 1000)
        log.close()  # the stream ends after the retained entries (skip policy)
        raw = await asyncio.wait_for(reader.read(), 30)
        writer.close()
    events = parse_sse(dechunk(raw))
    gaps = [orjson.loads(e["data"]) for e in events if e.get("event") == "gap"]
    got = [int(e["data"].split(":")[0]) for e in events if "id" not in e and "event" not in e and "data" in e]
    assert gaps and all(g["reason"] == "behind" and g["missed"] > 0 for g in gaps)
    if policy == "skip":
        # every entry is either delivered, in order, or counted in a gap: nothing is lost silently
        assert got == sorted(got)
        assert len(got) + sum(g["missed"] for g in gaps) == total
        assert slow_counter("sse") == before
    else:
        assert len(gaps) == 1 and events[-1].get("event") == "gap"  # the gap is the last word
        assert len(got) + gaps[0]["missed"] < total
        assert slow_counter("sse") == before + 1
    assert log.subscribers == 0


async def test_websocket_delivers_gaps_heartbeats_and_notices_disconnect() -> None:
    topics = Topics()
    async with running_server(create_app(topics, heartbeat_s=0.2)) as base:
        url = base.replace("http", "ws") + "/ws/c"
        async with ws_connect(url) as ws:
            log = topics.log("c")
            await until(lambda: log.subscribers == 1)
            assert orjson.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "ping"}
            for i in range(5):
                log.publish(i)
            log.mark_gap("disconnected")
            frames = [orjson.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(6)]
            frames = [f for f in frames if f["type"] != "ping"]
            while len(frames) < 6:
                f = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
                if f["type"] != "ping":
                    frames.append(f)
            assert [f["data"] for f in frames[:5]] == [0, 1, 2, 3, 4]
            assert frames[5] == {"type": "gap", "missed": None, "reason": "disconnected"}
        await until(lambda: log.subscribers == 0)
        # a closed log ends the socket normally
        async with ws_connect(url) as ws:
            await until(lambda: log.subscribers == 1)
            log.close()
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1000


@pytest.mark.parametrize("policy", ["skip", "disconnect"])
async def test_websocket_slow_client_policy(policy: str) -> None:
    topics = Topics(capacity=32)
    before = slow_counter("ws")
    async with running_server(create_app(topics, heartbeat_s=60)) as base:
        url = base.replace("http", "ws") + f"/ws/slow?policy={policy}"
        # A client that stops reading: tiny queue, so the socket backs up to the server.
        async with ws_connect(url, max_queue=1, compression=None) as ws:
            log = topics.log("slow")
            total = await flood_until_behind(topics, log, "y" * 1000)
            log.close()
            frames: list[dict[str, Any]] = []
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    frames.append(orjson.loads(await asyncio.wait_for(ws.recv(), 30)))
    gaps = [f for f in frames if f["type"] == "gap"]
    got = [int(f["data"].split(":")[0]) for f in frames if f["type"] == "message"]
    assert gaps and all(g["reason"] == "behind" and g["missed"] > 0 for g in gaps)
    if policy == "skip":
        assert got == sorted(got)
        assert len(got) + sum(g["missed"] for g in gaps) == total
        assert info.value.rcvd is not None and info.value.rcvd.code == 1000
        assert slow_counter("ws") == before
    else:
        assert len(gaps) == 1 and frames[-1]["type"] == "gap"
        assert len(got) + gaps[0]["missed"] < total
        assert slow_counter("ws") == before + 1


async def test_fast_sse_rejects_bad_requests_and_leaves_other_routes_to_the_app() -> None:
    topics = Topics()
    async with (
        running_server(create_app(topics, fast_sse=True)) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        assert (await http.get("/sse/x?policy=maybe")).status_code == 400
        assert (await http.get("/sse/x?last=-3")).status_code == 400
        assert (await http.get("/openapi.json")).status_code == 200  # the FastAPI app behind it
        assert topics.logs == {}


def frame(n: int) -> bytes:  # one encode function: one encoded view, so one pusher for all streams
    return b"data: %d\n\n" % n


def start_streams(log: FanoutLog[int], senders: list[Any]) -> list[asyncio.Task[None]]:
    """One SSEStream per ASGI ``send`` on ``log``; the client never disconnects (they end with the log)."""
    from onair.fanout.sse import SSEStream

    scope = {"type": "http", "method": "GET", "path": "/sse/x"}

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    return [
        asyncio.create_task(SSEStream(log.subscribe(), encode=frame, heartbeat_s=0)(scope, receive, send))
        for send in senders
    ]


async def test_sse_stream_pusher_hands_blocked_sends_back_in_order() -> None:
    """SSEStream's shared pusher writes caught-up connections; a send that blocks (here every
    third one) is finished by the connection's own task, in order, then the connection rejoins."""
    from onair.fanout.sse import _Pusher

    log: FanoutLog[int] = FanoutLog(64, name="test-pusher")
    bodies: list[list[bytes]] = [[] for _ in range(5)]

    def sender(i: int) -> Any:
        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                if len(bodies[i]) % 3 == 2:
                    await asyncio.sleep(0)  # a blocked write
                bodies[i].append(message["body"])

        return send

    tasks = start_streams(log, [sender(i) for i in range(5)])
    await asyncio.sleep(0.01)
    for n in range(300):
        log.publish(n)
        if n % 7 == 0:
            await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    log.close()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    expected = b"".join(frame(n) for n in range(300))
    for got in bodies:
        assert b"".join(got) == expected
    assert log.waiting == 0 and not _Pusher._all


async def test_sse_stream_pusher_sweep_delivers_what_arrives_mid_sweep_to_every_connection() -> None:
    """The pusher lets the loop run every YIELD_EVERY connections of a sweep and goes on with the
    new head; the connections it had already passed still get the newer entries (another sweep
    follows), even if nothing else is ever published."""
    from onair.fanout import sse

    log: FanoutLog[int] = FanoutLog(64, name="test-sweep")
    n_conns = 3 * sse.YIELD_EVERY + 7
    bodies: list[list[bytes]] = [[] for _ in range(n_conns)]
    publish_mid_sweep = [True]

    def sender(i: int) -> Any:
        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and message["body"]:
                bodies[i].append(message["body"])
                if i == sse.YIELD_EVERY - 1 and publish_mid_sweep[0]:
                    publish_mid_sweep[0] = False
                    # published while the sweep goes on: seen after the next yield
                    asyncio.get_running_loop().call_soon(log.publish, 2)

        return send

    tasks = start_streams(log, [sender(i) for i in range(n_conns)])
    await asyncio.sleep(0.01)
    log.publish(1)
    expected = frame(1) + frame(2)
    await until(lambda: all(b"".join(b) == expected for b in bodies), within=5)
    assert not publish_mid_sweep[0]
    # the connections after the mid-sweep publish got both entries in one write
    assert any(len(b) == 1 for b in bodies) and any(len(b) == 2 for b in bodies)
    log.close()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)


async def test_sse_stream_pusher_waits_for_a_batching_writers_wake() -> None:
    """A writer that batches (publish(wake=False) + wake(), FanoutBridge(coalesce_s=)) decides when
    the pusher writes: unannounced entries go out with the next wake-up, in one write."""
    log: FanoutLog[int] = FanoutLog(64, name="test-batching")
    bodies: list[list[bytes]] = [[] for _ in range(3)]

    def sender(i: int) -> Any:
        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and message["body"]:
                bodies[i].append(message["body"])

        return send

    tasks = start_streams(log, [sender(i) for i in range(3)])
    await asyncio.sleep(0.01)
    log.publish(1)
    await until(lambda: all(b == [frame(1)] for b in bodies))
    for n in (2, 3, 4):
        log.publish(n, wake=False)
    await asyncio.sleep(0.05)
    assert all(len(b) == 1 for b in bodies)  # nothing announced, nothing written
    log.wake()
    await until(lambda: all(b[1:] == [frame(2) + frame(3) + frame(4)] for b in bodies))
    log.close()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
